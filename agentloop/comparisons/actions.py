"""Start one task on several harnesses/models as a group; read the group back as comparable rows.

`start_group` checks every variant before it starts any (normalize_config and
availability, the same checks a single session gets), then starts one run per
variant and the group in one transaction: a group is all of its runs or none.
`get_group_for_user` is the one access helper of a group (through its project:
404 when the user may not see it). `rows` is what the page and the API show.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction

from agentloop.comparisons.models import RunGroup
from agentloop.presets.actions import config_from_preset
from agentloop.runs import actions as run_actions
from agentloop.runs.availability import unavailable
from agentloop.runs.config import normalize_config
from agentloop.teams.access import get_project_for_user

MAX_VARIANTS = 8


@dataclass
class Variant:
    """One column of the comparison: an ad-hoc config, or a preset (and its overrides)."""

    config: dict
    preset_id: int | None = None


def get_group_for_user(user, group_id: int, need: str = "view") -> RunGroup:
    from django.http import Http404

    try:
        group = RunGroup.objects.select_related("project").get(pk=group_id)
    except RunGroup.DoesNotExist:
        raise Http404("No such group.") from None
    get_project_for_user(user, group.project_id, need)
    return group


def start_group(user, project, variants: list[Variant], prompt: str) -> RunGroup:
    project = get_project_for_user(user, project.pk, "use")
    prompt = (prompt or "").strip()
    if not prompt:
        raise ValidationError({"prompt": "Describe the task."})
    if not 2 <= len(variants) <= MAX_VARIANTS:
        raise ValidationError(
            {"variants": f"Choose between 2 and {MAX_VARIANTS} harnesses or presets to compare."}
        )
    resolved = []
    problems = []
    for number, variant in enumerate(variants, 1):
        if variant.preset_id is not None:
            preset, config = config_from_preset(user, project, variant.preset_id)
        else:
            preset, config = None, dict(variant.config)
        try:
            snapshot, _ = normalize_config(config, space=project.space, user=user)
        except ValidationError as error:
            problems.append(f"variant {number}: {' '.join(error.messages)}")
            continue
        why = unavailable(snapshot["harness"], snapshot["llm_provider"])
        if why:
            problems.append(f"variant {number}: {why}")
            continue
        resolved.append((preset, config))
    if problems:
        raise ValidationError({"variants": problems})
    with transaction.atomic():
        group = RunGroup.objects.create(
            space=project.space, project=project, prompt=prompt, created_by=user
        )
        runs = [
            run_actions.start_session(user, project, config, prompt, preset=preset)
            for preset, config in resolved
        ]
        group.runs.set(runs)
    return group


def label_of(run) -> str:
    config = run.config or {}
    base = f"{config.get('harness', '?')} · {config.get('model', '')}".strip(" ·")
    if config.get("preset_name"):
        return f"{config['preset_name']} ({base})"
    return base


def rows(group: RunGroup) -> list[dict]:
    """Each run of the group: outcome, duration, tokens, cost, artifacts; in start order."""
    found = []
    for run in group.runs.order_by("pk").prefetch_related("artifacts"):
        duration = None
        if run.started_at:
            end = run.finished_at
            duration = (end - run.started_at).total_seconds() if end else None
        found.append(
            {
                "run": str(run.code),
                "label": label_of(run),
                "harness": run.config.get("harness"),
                "llm_provider": run.config.get("llm_provider", ""),
                "model": run.config.get("model"),
                "status": run.status,
                "exit_reason": run.exit_reason,
                "duration_seconds": duration,
                "input_tokens": run.input_tokens,
                "output_tokens": run.output_tokens,
                "total_tokens": run.input_tokens + run.output_tokens,
                "cost_usd": str(run.cost_usd),
                "artifacts": [
                    {"id": a.pk, "kind": a.kind, "name": a.name} for a in run.artifacts.all()
                ],
            }
        )
    return found


def as_json(group: RunGroup) -> dict:
    return {
        "id": group.pk,
        "project": group.project_id,
        "prompt": group.prompt,
        "created_at": group.created_at.isoformat(),
        "runs": rows(group),
    }
