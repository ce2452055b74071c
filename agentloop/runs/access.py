"""The access helper for runs: through the run's project, like everything else."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import Http404

from agentloop.runs.models import Run
from agentloop.teams.access import get_project_for_user, spaces_for_user


def get_run_for_user(user, code, need: str = "view") -> Run:
    """The run with this public code, or Http404 / PermissionDenied as for its project."""
    try:
        run = Run.objects.select_related("project__space").get(code=code)
    except (Run.DoesNotExist, ValidationError, ValueError, TypeError):  # bad UUIDs too
        raise Http404("No such run.") from None
    try:
        get_project_for_user(user, run.project_id, need)
    except Http404:
        raise Http404("No such run.") from None
    return run


def runs_for_user(user, need: str = "view"):
    """Every run the user may see (or, with need="use", act on): those of their spaces."""
    return Run.objects.filter(space__in=spaces_for_user(user, need))
