"""Which runs the Swarms table shows: the visible ones, narrowed by the filter form.

`visible_runs(user)` is the only way the Swarms pages list runs: every run in a
space where the user has "view", sessions and automations alike. The filter is
parsed once from the query string (a bad value is an error to show, never
silently ignored) and applied as plain ORM filters.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db.models import Count, Q, QuerySet

from agentloop.runs.models import ArtifactKind, Run, RunKind, RunStatus, RunTrigger
from agentloop.teams.access import projects_for_user, spaces_for_user

# The preset filter's value for runs started without a preset.
AD_HOC = "ad-hoc"
MAX_SEARCH_LENGTH = 200


class InvalidFilter(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class RunFilter:
    status: str = ""
    kind: str = ""
    trigger: str = ""
    preset: str = ""  # a preset name, or AD_HOC
    project: int | None = None
    creator: str = ""  # a username
    q: str = ""  # text in the prompt

    @property
    def is_set(self) -> bool:
        return any(
            (self.status, self.kind, self.trigger, self.preset, self.project, self.creator, self.q)
        )


def visible_runs(user) -> QuerySet[Run]:
    return Run.objects.filter(space__in=spaces_for_user(user, "view"))


def _choice(params, name: str, choices, label: str) -> str:
    value = (params.get(name) or "").strip()
    if value and value not in choices:
        raise InvalidFilter(f"Unknown {label} {value!r}; choose one of {', '.join(choices)}.")
    return value


def parse_run_filter(params) -> RunFilter:
    project = (params.get("project") or "").strip()
    if project and not project.isdigit():
        raise InvalidFilter(f"Project must be a project id; got {project!r}.")
    q = (params.get("q") or "").strip()
    if len(q) > MAX_SEARCH_LENGTH:
        raise InvalidFilter(f"Search text is longer than {MAX_SEARCH_LENGTH} characters.")
    return RunFilter(
        status=_choice(params, "status", RunStatus.values, "status"),
        kind=_choice(params, "kind", RunKind.values, "kind"),
        trigger=_choice(params, "trigger", RunTrigger.values, "trigger"),
        preset=(params.get("preset") or "").strip(),
        project=int(project) if project else None,
        creator=(params.get("creator") or "").strip(),
        q=q,
    )


def filter_runs(runs: QuerySet[Run], f: RunFilter) -> QuerySet[Run]:
    if f.status:
        runs = runs.filter(status=f.status)
    if f.kind:
        runs = runs.filter(kind=f.kind)
    if f.trigger:
        runs = runs.filter(trigger=f.trigger)
    if f.preset == AD_HOC:
        runs = runs.filter(Q(config__preset_name="") | Q(config__preset_name__isnull=True))
    elif f.preset:
        runs = runs.filter(config__preset_name=f.preset)
    if f.project is not None:
        runs = runs.filter(project_id=f.project)
    if f.creator:
        runs = runs.filter(creator__username=f.creator)
    if f.q:
        runs = runs.filter(prompt__icontains=f.q)
    return runs


def table_runs(runs: QuerySet[Run]) -> QuerySet[Run]:
    """What each table row needs, in one query: related names and artifact counts."""
    return (
        runs.select_related("project", "creator")
        .annotate(
            artifact_count=Count("artifacts"),
            pr_count=Count("artifacts", filter=Q(artifacts__kind=ArtifactKind.PULL_REQUEST)),
        )
        .order_by("-created_at", "-id")
    )


def filter_options(user, runs: QuerySet[Run]) -> dict:
    """The choices of the filter form, from the runs the user can see."""
    presets = sorted(
        {name for name in runs.values_list("config__preset_name", flat=True).distinct() if name}
    )
    creators = (
        get_user_model()
        .objects.filter(pk__in=runs.exclude(creator=None).values("creator"))
        .order_by("username")
        .values_list("username", flat=True)
    )
    return {
        "statuses": RunStatus.choices,
        "kinds": RunKind.choices,
        "triggers": RunTrigger.choices,
        "presets": presets,
        "ad_hoc": AD_HOC,
        "projects": list(projects_for_user(user, "view").order_by("space__name", "name")),
        "creators": list(creators),
    }
