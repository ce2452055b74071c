"""Signal: a project watched by its own automations, and the issues they find.

    enable(user, project)   creates the space's built-in hidden "Signal" preset
                            (trace access only; Claude Code when the deployment has a
                            model key, else the analyst) if needed, and the project's
                            Signal automations: a cadence every 10 minutes, error
                            rate > 10 % and failing eval labels > 20 %
    disable(user, project)  deletes those automations (their runs stay)
    use_harness(user, project, harness)
                            switches the project's Signal preset between the analyst
                            and Claude Code (members)
    attach_repository(user, project, skill_id, url, base_branch) / detach_repository
                            repo-backed fixes (space admins): the project gets its own
                            Signal preset with the GitHub skill and the repository
    collect()               reads finished Signal runs' investigation.md into
                            SignalIssue rows (called by every automations tick)
    tab_context(project)    what the Signal tab shows

An issue is keyed by what failed: for errors span name + exception type, for
other findings their kind and title. A new run with the same failure updates
the issue (counts, traces, last seen) and adds a sighting; it never duplicates.
"""

from __future__ import annotations

import re
import shlex
from collections import OrderedDict
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from agentloop.automations.models import Automation, AutomationFire
from agentloop.presets.models import AgentPreset
from agentloop.runs.config import DEFAULT_MODEL, normalize_config
from agentloop.runs.models import ArtifactKind, RunStatus
from agentloop.signal.models import SignalIssue, SignalSighting
from agentloop.teams.access import get_project_for_user, get_space_for_user

PRESET_NAME = "Signal (built-in)"
SIGNAL_PROMPT = (
    "You are Signal. Investigate this project's recent traces: find errors, latency "
    "outliers and failing eval labels, rank them by the number of traces affected, give "
    "evidence (trace ids and the span filters that reproduce them) and propose a fix. "
    "Write artifacts/investigation.md and propose eval labels for failed LLM calls."
)
ROLES = {
    "cadence": dict(trigger="cron", cron_expression="*/10 * * * *"),
    "errors": dict(
        trigger="metric", metric="error_rate", comparison=">", threshold=0.1,
        every_minutes=5, window_minutes=30, min_spans=20,
    ),
    "evals": dict(
        trigger="metric", metric="eval_label_rate", comparison=">", threshold=0.2,
        every_minutes=15, window_minutes=60, min_spans=10,
        eval_name="correctness", eval_label="incorrect",
    ),
}  # fmt: skip
ROLE_NAMES = {"cadence": "every 10 minutes", "errors": "error rate", "evals": "failing eval labels"}
VOLUME_DAYS = 14


CLAUDE_PROMPT = (
    SIGNAL_PROMPT
    + """

How to work:
- Read the project's traces with the `agentloop-traces` command (run `agentloop-traces
  --help`): `spans --status ERROR`, `trace <id>`, `annotations --name correctness`.
- Write artifacts/investigation.md in exactly this shape (Signal reads it):

  # Investigation: <project>

  ## Overview

  <a few lines: window, spans read, errors found>

  ## Findings

  ### 1. `<span name>` fails with <ExceptionType>

  Affects <N> traces (<M> spans).
  <what happens, in a few lines>

  Evidence:

  - trace `<32-hex trace id>` — `agentloop-traces trace <trace id>`
  - reproduce: `agentloop-traces spans --status ERROR --name <span name>`

  (more findings as ### 2., ### 3., ranked by traces affected; titles of other
  findings start with "eval " for failing eval labels, contain "slow" for latency
  and "token" for token use)

  ## What to look at

  1. <the proposed fix for finding 1>
  2. <the proposed fix for finding 2>

- Propose eval labels for failed LLM calls with `agentloop-traces label --span-id ...
  --trace-id ... --name correctness --label incorrect --explanation "..."`; people
  review them before they are applied.
- If the workspace is a checkout of a repository, fix the top finding there with a
  small, focused change: it is pushed as a branch that a person reviews. Leave the
  repository untouched when you are not sure of the fix.
"""
)
ANALYST = "analyst"
CLAUDE_CODE = "claude-code"


def model_configured() -> bool:
    """Whether the deployment can run Claude Code: the LLM gateway has a real key."""
    return bool(getattr(settings, "AGENTLOOP_ANTHROPIC_API_KEY", ""))


def harness_fields(harness: str) -> dict:
    """The preset fields that differ between Signal on the analyst and on Claude Code."""
    if harness == CLAUDE_CODE:
        model = getattr(settings, "AGENTLOOP_SIGNAL_MODEL", "") or DEFAULT_MODEL
        return {"harness": CLAUDE_CODE, "model": model, "system_prompt": CLAUDE_PROMPT,
                "max_turns": 50}  # fmt: skip
    return {"harness": ANALYST, "model": DEFAULT_MODEL, "system_prompt": SIGNAL_PROMPT,
            "max_turns": 1}  # fmt: skip


def signal_preset(space) -> AgentPreset:
    """The space's shared built-in preset, created on first use with the best harness
    the deployment has."""
    preset, _ = AgentPreset.objects.get_or_create(
        space=space,
        name=PRESET_NAME,
        defaults={
            "hidden": True,
            **harness_fields(CLAUDE_CODE if model_configured() else ANALYST),
        },
    )
    return preset


def preset_of(project) -> AgentPreset | None:
    """The preset the project's Signal automations run (None when Signal is off)."""
    automation = automations_of(project).exclude(preset=None).select_related("preset").first()
    return automation.preset if automation else None


def _own_preset(project) -> AgentPreset:
    """The project's own Signal preset, made from the shared one the first time a change
    should not reach the space's other projects (a repository is per project)."""
    preset = preset_of(project)
    if preset is None:
        raise ValidationError("Enable Signal first.")
    name = f"{PRESET_NAME} · {project.name}"[:200]
    if preset.name == name:
        return preset
    shared = preset
    preset, _ = AgentPreset.objects.get_or_create(
        space=project.space,
        name=name,
        defaults={
            "hidden": True,
            "harness": shared.harness,
            "model": shared.model,
            "system_prompt": shared.system_prompt,
            "max_turns": shared.max_turns,
            "time_limit_seconds": shared.time_limit_seconds,
        },
    )
    automations_of(project).update(preset=preset, updated_at=timezone.now())
    return preset


def use_harness(user, project, harness: str) -> AgentPreset:
    """Switch the preset the project's Signal runs use; runs already started keep theirs."""
    project = get_project_for_user(user, project.pk, "use")
    if harness not in (ANALYST, CLAUDE_CODE):
        raise ValidationError(f"Unknown harness {harness!r}.")
    if harness == CLAUDE_CODE and not model_configured():
        raise ValidationError(
            "Claude Code needs a model: this deployment has no AGENTLOOP_ANTHROPIC_API_KEY."
        )
    with transaction.atomic():
        preset = preset_of(project)
        if preset is None:
            raise ValidationError("Enable Signal first.")
        for field, value in harness_fields(harness).items():
            setattr(preset, field, value)
        preset.updated_at = timezone.now()
        preset.save()
    return preset


def github_skills(space):
    from agentloop.presets.actions import GITHUB_KIND
    from agentloop.skills.models import Skill

    return Skill.objects.filter(space=space, kind=GITHUB_KIND).order_by("name")


def attach_repository(user, project, skill_id, url: str, base_branch: str) -> AgentPreset:
    """Give the project's Signal runs a repository to propose fixes in (space admins:
    it binds a GitHub credential to unattended runs). ValidationError stores nothing."""
    project = get_project_for_user(user, project.pk, "view")
    get_space_for_user(user, project.space_id, "admin")
    url, base_branch = (url or "").strip(), (base_branch or "").strip() or "main"
    skill = github_skills(project.space).filter(pk=skill_id if str(skill_id).isdigit() else 0)
    skill = skill.first()
    if skill is None:
        raise ValidationError({"skill": "Choose a GitHub skill of this space."})
    try:
        normalize_config({"repository": {"url": url, "base_branch": base_branch}})
    except ValidationError as error:
        fields = {"repository.url": "url", "repository.base_branch": "base_branch"}
        raise ValidationError(
            {
                fields.get(field, "__all__"): messages
                for field, messages in error.message_dict.items()
            }  # fmt: skip
        ) from None
    with transaction.atomic():
        preset = _own_preset(project)
        preset.repository_url = url
        preset.base_branch = base_branch
        preset.updated_at = timezone.now()
        preset.save()
        preset.skills.remove(*github_skills(project.space))
        preset.skills.add(skill)
    return preset


def detach_repository(user, project) -> AgentPreset | None:
    """Signal runs of the project stop cloning the repository (space admins)."""
    project = get_project_for_user(user, project.pk, "view")
    get_space_for_user(user, project.space_id, "admin")
    with transaction.atomic():
        preset = preset_of(project)
        if preset is None:
            return None
        preset.repository_url = ""
        preset.base_branch = ""
        preset.updated_at = timezone.now()
        preset.save()
        preset.skills.remove(*github_skills(project.space))
    return preset


def automations_of(project):
    return Automation.objects.filter(project=project).exclude(signal_role="")


def is_enabled(project) -> bool:
    return automations_of(project).exists()


def enable(user, project, *, now=None) -> list[Automation]:
    from agentloop.automations.actions import save_automation

    project = get_project_for_user(user, project.pk, "use")
    now = now or timezone.now()
    with transaction.atomic():
        existing = {a.signal_role: a for a in automations_of(project)}
        # A project that had its own preset (a repository) gets it back on re-enable.
        preset = AgentPreset.objects.filter(
            space=project.space, name=f"{PRESET_NAME} · {project.name}"[:200]
        ).first() or signal_preset(project.space)
        created = []
        for role, fields in ROLES.items():
            if role in existing:
                continue
            automation = Automation(
                space=project.space,
                project=project,
                preset=preset,
                name=f"Signal · {project.name} · {ROLE_NAMES[role]}"[:200],
                prompt=SIGNAL_PROMPT,
                signal_role=role,
                cooldown_minutes=5,
                max_concurrent=1,
                **fields,
            )
            created.append(save_automation(user, automation, now=now))
    return created


def disable(user, project) -> int:
    project = get_project_for_user(user, project.pk, "use")
    deleted, _ = automations_of(project).delete()
    return deleted


# -- reading investigations ------------------------------------------------------------------------

_HEADING = re.compile(r"^### \d+\. (?P<title>.+)$")
_AFFECTS = re.compile(r"^Affects (?P<traces>\d+) traces? \((?P<spans>\d+) spans?\)\.")
_TRACE = re.compile(r"^- trace `(?P<id>[0-9a-fA-F]{1,32})`")
_REPRODUCE = re.compile(r"^- reproduce: `(?P<cmd>.+)`$")
_ERROR_TITLE = re.compile(r"^`(?P<name>.+)` fails with (?P<exc>.+)$")


def parse_investigation(text: str) -> list[dict]:
    """The findings of an analyst investigation.md, in its order (ranked)."""
    findings, current, section = [], None, ""
    fixes: list[str] = []
    for line in (text or "").splitlines():
        if line.startswith("## "):
            section = line[3:].strip().lower()
            current = None
            continue
        heading = _HEADING.match(line)
        if heading and section == "findings":
            current = {"title": heading["title"].strip(), "overview": [], "trace_ids": [],
                       "reproduce": "", "traces": 0, "spans": 0}  # fmt: skip
            findings.append(current)
            continue
        if section == "what to look at":
            match = re.match(r"^\d+\. (.+)$", line)
            if match:
                fixes.append(match[1].strip())
            continue
        if current is None:
            continue
        if m := _AFFECTS.match(line):
            current["traces"], current["spans"] = int(m["traces"]), int(m["spans"])
        elif m := _TRACE.match(line):
            current["trace_ids"].append(m["id"])
        elif m := _REPRODUCE.match(line):
            current["reproduce"] = m["cmd"]
        elif line.strip() and line.strip() != "Evidence:" and not line.startswith("- and "):
            current["overview"].append(line.strip())
    for number, finding in enumerate(findings):
        finding["proposed_fix"] = fixes[number] if number < len(fixes) else ""
        finding["overview"] = "\n".join(finding["overview"])
        finding["kind"], finding["key"] = issue_key(finding["title"])
        finding["span_filter"] = span_filter_of(finding["reproduce"])
    return findings


def issue_key(title: str) -> tuple[str, str]:
    """(kind, key): errors by span name + exception type, the rest by title."""
    if m := _ERROR_TITLE.match(title):
        return "error", f"error:{m['name']}:{m['exc']}"
    if title.startswith("eval "):
        return "eval", f"eval:{title}"
    if "slow" in title:
        return "latency", f"latency:{title}"
    if "token" in title:
        return "tokens", f"tokens:{title}"
    return "other", f"other:{title}"


def span_filter_of(command: str) -> dict:
    """`agentloop-traces spans --status ERROR --name chat` → explorer parameters.

    The window (start/end) is left out: the issue is about the failure, and the
    explorer then shows its newest spans."""
    try:
        parts = shlex.split(command or "")
    except ValueError:
        return {}
    params = {}
    for flag, value in zip(parts, parts[1:], strict=False):
        if flag.startswith("--") and not value.startswith("--"):
            key = flag[2:].replace("-", "_")
            if key in {"status", "name", "kind", "annotation", "session_id", "user_id"}:
                params[key] = value
    return params


def record_run(run, text: str, *, now=None) -> list[SignalIssue]:
    """Upsert the issues a Signal run's investigation found."""
    now = now or timezone.now()
    issues = []
    with transaction.atomic():
        for finding in parse_investigation(text):
            issue, created = SignalIssue.objects.select_for_update().get_or_create(
                project_id=run.project_id,
                key=finding["key"][:600],
                defaults={"title": finding["title"][:600], "first_seen_at": now},
            )
            merged = list(OrderedDict.fromkeys(finding["trace_ids"] + list(issue.trace_ids)))
            issue.title = finding["title"][:600]
            issue.kind = finding["kind"]
            issue.overview = finding["overview"]
            issue.proposed_fix = finding["proposed_fix"] or issue.proposed_fix
            issue.trace_ids = merged[:50]
            issue.reproduce = finding["reproduce"]
            issue.span_filter = finding["span_filter"]
            issue.affected_traces = max(finding["traces"], len(finding["trace_ids"]))
            issue.span_count = finding["spans"]
            issue.last_seen_at = now
            issue.last_run = run
            issue.save()
            SignalSighting.objects.get_or_create(
                issue=issue,
                run=run,
                defaults={
                    "seen_at": now,
                    "affected_traces": issue.affected_traces,
                    "span_count": finding["spans"],
                },  # fmt: skip
            )
            issues.append(issue)
    return issues


def collect(now=None) -> int:
    """Read the investigations of Signal runs that finished since the last tick."""
    now = now or timezone.now()
    fires = (
        AutomationFire.objects.filter(
            automation__signal_role__gt="", run__status=RunStatus.SUCCEEDED
        )
        .exclude(context__has_key="signal_collected")
        .select_related("run")
    )
    done = 0
    for fire in fires[:100]:
        investigation = (
            fire.run.artifacts.filter(kind=ArtifactKind.INVESTIGATION).order_by("-pk").first()
        )
        if investigation is not None:
            record_run(fire.run, investigation.content, now=now)
        fire.context = {**fire.context, "signal_collected": now.isoformat()}
        fire.save(update_fields=["context"])
        done += 1
    return done


def collect_task() -> int:
    """The scheduled task: how many finished Signal runs this pass read."""
    return collect()


def tab_context(project, *, now=None) -> dict:
    now = now or timezone.now()
    issues = list(
        SignalIssue.objects.filter(project=project).order_by("-affected_traces", "-last_seen_at")
    )
    start = (now - timedelta(days=VOLUME_DAYS - 1)).date()
    days = [start + timedelta(days=i) for i in range(VOLUME_DAYS)]
    totals = dict.fromkeys(days, 0)
    for sighting in SignalSighting.objects.filter(
        issue__project=project, seen_at__date__gte=start
    ).values("seen_at", "affected_traces"):
        day = timezone.localdate(sighting["seen_at"])
        if day in totals:
            totals[day] += sighting["affected_traces"]
    peak = max(totals.values()) or 1
    volume = [
        {"day": day, "traces": count, "percent": round(100 * count / peak)}
        for day, count in totals.items()
    ]
    preset = preset_of(project)
    return {
        "signal_preset": preset,
        "signal_skills": list(preset.skills.all()) if preset else [],
        "github_skills": list(github_skills(project.space)),
        "model_configured": model_configured(),
        "signal_enabled": is_enabled(project),
        "signal_automations": list(automations_of(project).order_by("signal_role")),
        "issues": issues,
        "volume": volume,
    }
