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
    run_now(user, project)  a Signal pass now (the cadence automation, fired by hand)
    investigate(user, issue) / propose_fix(user, issue)
                            a session seeded with an issue's evidence; with a
                            repository, a run that proposes a fix as a branch

What the runs find becomes issues in agentloop.signal.issues; the tab is
agentloop.signal.tab.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404
from django.utils import timezone

from agentloop.automations import actions as automation_actions
from agentloop.automations.models import Automation, AutomationFire
from agentloop.presets.actions import GITHUB_KIND, preset_to_config
from agentloop.presets.models import AgentPreset
from agentloop.runs.actions import start_session
from agentloop.runs.config import DEFAULT_MODEL, normalize_config
from agentloop.signal.models import SignalIssue
from agentloop.skills.models import Skill
from agentloop.teams.access import get_project_for_user, get_space_for_user

PRESET_NAME = "Signal (built-in)"
SIGNAL_PROMPT = (
    "You are Signal. Investigate this project's traces of the last 24 hours against the 24 "
    "hours before: what fails (errors, latency, tokens and cost, evals, retrievals, tool "
    "calls), where it concentrates, since when, and how much; rank the issues by severity, "
    "give evidence that shows each issue and no other, and propose a fix naming the "
    "component. Write artifacts/signal-issues.json and artifacts/investigation.md."
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

How to work (the agentloop-traces skill has the commands):
1. How much, against before: `agentloop-traces stats --since 24h --group-by kind
   --group-by name --baseline previous --bucket 30m --json`. Rates, p50/p95 and tokens per
   component, now and in the 24 h before.
2. What fails: `stats --status ERROR --group-by name --group-by exception.type
   --baseline previous`. A root span (AGENT/CHAIN) failing with its child's exception is
   the child's issue, not another one.
3. Where: for each failure, `stats --name <span> --group-by attr:<key>` for the keys its
   spans carry (region, tier, model, prompt template version...; `spans --name <span>
   --max 50` shows them). A value holding most of the failures at several times the rest's
   rate is where it concentrates.
4. Since when: `stats --name <span> --bucket 30m` (with `--status ERROR` or
   `--exception-type`): a rise that stays is an onset, a rise that falls back a burst with
   a start and an end. Latency (p50 per bucket) and tokens per call the same way.
5. Evals: `annotations --max 500` lists the app's evals; `stats --eval NAME=LABEL
   --group-by name` and `--group-by attr:<key>` find where they fail. Retrievers whose spans
   lack `retrieval.documents.0.document.id` returned nothing
   (`spans --kind RETRIEVER --attr-missing retrieval.documents.0.document.id`): check whether
   those traces fail an eval after.
6. Evidence: for each issue, traces (`trace <id>`) that show that issue and no other.

Severity: high or medium only for what rose against before, started or burst, concentrates
in a dimension, or fails a quarter of its calls; a low rate spread everywhere and flat in
time is the app's background (low). Say "nothing notable" when nothing is above low.

Write artifacts/signal-issues.json — Signal keeps what is in it, across runs, by
fingerprint:

  {"issues": [{"fingerprint": "error:<span>:<exception>@attr:<key>=<value>",
    "class": "error_concentration|error_onset|error_burst|latency_regression|token_blowup|
              eval_failure|retrieval_gap|tool_loop|prompt_regression|errors",
    "title": "...", "severity": "high|medium|low",
    "component": {"kind": "tool|llm|retriever|span|prompt", "name": "<span name>"},
    "where": [{"dimension": "attr:<key>", "value": "...", "share": 0.9, "lift": 12.0}],
    "since": {"onset": "<ISO time or null>", "end": "<ISO time or null>"},
    "how_much": {"rate": 0.31, "baseline_rate": 0.004, "affected_traces": 130,
                 "share_of_traffic": 0.05, "spans": 140},
    "evidence": ["<32-hex trace id>", ...],
    "proposed_fix": "<what to change, naming the component>",
    "overview": "<a few lines>", "reproduce": "agentloop-traces spans ..."}]}

The fingerprint names what failed and where, never counts or times. Also write
artifacts/investigation.md for people, in this shape:

  # Investigation: <project>

  ## Overview

  <a few lines: window, spans read, errors found>

  ## Findings

  ### 1. `<span name>` fails with <ExceptionType>

  Affects <N> traces (<M> spans).
  <what happens, where, since when, how much>

  Evidence:

  - trace `<32-hex trace id>` — `agentloop-traces trace <trace id>`
  - reproduce: `agentloop-traces spans --status ERROR --name <span name>`

  ## What to look at

  1. <the proposed fix for finding 1>

- Propose eval labels for what the evidence shows (a failed LLM call: correctness=incorrect;
  an answer made from an empty retrieval: hallucination=hallucinated) with
  `agentloop-traces label --span-id ... --trace-id ... --name ... --label ...
  --explanation "<why>"`; people review them before they are applied.
- If the workspace is a checkout of a repository, fix the top issue there with a small,
  focused change: it is pushed as a branch that a person reviews. Leave the repository
  untouched when you are not sure of the fix.
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
    """Turn Signal on (members, docs/roles.md): its automations run on a schedule."""
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
            created.append(automation_actions.save_automation(user, automation, now=now))
    return created


def disable(user, project) -> int:
    """Turn Signal off (admins, docs/roles.md: it deletes automations, which members may
    do only to their own); the issues found so far stay."""
    project = get_project_for_user(user, project.pk, "admin")
    deleted, _ = automations_of(project).delete()
    return deleted


def run_now(user, project) -> AutomationFire:
    """A Signal pass now: the project's cadence automation fired by hand, with the
    same admission checks as a scheduled one (AutomationError says why not)."""
    project = get_project_for_user(user, project.pk, "use")
    cadence = automations_of(project).filter(signal_role="cadence").first()
    if cadence is None:
        raise ValidationError("Enable Signal first.")
    return automation_actions.run_now(user, cadence)


def _issue_brief(issue: SignalIssue) -> str:
    """What a worker needs to know of an issue: the finding and its evidence."""
    lines = [f"Signal issue: {issue.title} (severity {issue.severity}, {issue.state})."]
    if issue.overview:
        lines += ["", issue.overview]
    if issue.where:
        lines += [""] + [
            f"Concentrated in {w['dimension']}={w['value']}"
            + (f" (lift {w['lift']:.1f}×)" if isinstance(w.get("lift"), int | float) else "")
            for w in issue.where
        ]
    if issue.since.get("onset"):
        until = f" until {issue.since['end']}" if issue.since.get("end") else ""
        lines.append(f"Since {issue.since['onset']}{until}")
    if issue.trace_ids:
        lines += ["", "Evidence traces (read them with `agentloop-traces trace <id>`):"]
        lines += [f"- {trace_id}" for trace_id in issue.trace_ids[:10]]
    if issue.reproduce:
        lines += ["", f"Reproduce: `{issue.reproduce}`"]
    if issue.proposed_fix:
        lines += ["", f"Signal's proposed fix: {issue.proposed_fix}"]
    return "\n".join(lines)


def get_issue_for_user(user, project, issue_id, need: str = "view") -> SignalIssue:
    """An issue of a project the user may `need`, or Http404."""
    project = get_project_for_user(user, project.pk, need)
    try:
        issue = SignalIssue.objects.get(pk=issue_id, project=project)
    except (SignalIssue.DoesNotExist, ValueError, TypeError):
        raise Http404("No such issue.") from None
    issue.project = project
    return issue


def investigate(user, issue: SignalIssue):
    """A session on the issue's project, seeded with its evidence, with Signal's preset."""
    project = get_project_for_user(user, issue.project_id, "use")
    preset = preset_of(project) or signal_preset(project.space)
    config = preset_to_config(preset)
    config["repository"] = None  # looking, not changing: the fix is its own run
    config["skills"] = []
    prompt = (
        _issue_brief(issue)
        + "\n\nInvestigate this issue: confirm its cause from the evidence traces, check "
        "whether it is still happening, and say what to change and where."
    )
    return start_session(user, project, config, prompt, preset=preset)


def propose_fix(user, issue: SignalIssue):
    """A run in the project's attached repository that fixes the issue on a branch; the
    branch goes to review, and approving it opens a draft pull request."""
    project = get_project_for_user(user, issue.project_id, "use")
    preset = preset_of(project)
    if preset is None or not preset.repository_url:
        raise ValidationError("Attach a repository to Signal first (an admin can, on this tab).")
    if preset.harness != CLAUDE_CODE:
        raise ValidationError("Proposing a fix needs Claude Code: the analyst only reads traces.")
    prompt = (
        _issue_brief(issue)
        + "\n\nFix this issue in the repository checked out in your workspace: make the "
        "smallest change that removes the cause, with a test if the repository has tests. "
        "Your commits are pushed as a branch that a person reviews before any pull request."
    )
    return start_session(user, project, preset_to_config(preset), prompt, preset=preset)
