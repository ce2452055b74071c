"""Agent Swarms: every run the user may see, a map of the last two days, one run
in detail, and cancelling runs in bulk.

Runs are listed only through swarms.filters.visible_runs and fetched one by one
only through agentloop.runs.access.get_run_for_user, so these pages show exactly
what the rest of the app lets the user see.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.template.loader import select_template
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from agentloop.runs import actions, worker_trace
from agentloop.runs.access import get_run_for_user
from agentloop.runs.models import ACTIVE, TERMINAL, Run, RunStatus
from agentloop.teams.access import get_space_for_user, spaces_for_user
from agentloop.traces.models import Trace
from swarms import filters

PAGE_SIZE = 50
# The map's time ranges (?window=); a cell per run, so a long range stays readable.
MAP_WINDOWS = {
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "48h": timedelta(hours=48),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
MAP_DEFAULT_WINDOW = "48h"
MAP_MAX_RUNS = 2000
MAX_BULK = 200
# Studio's transcript partial when it is there, ours otherwise: one look for an
# event wherever a transcript is shown.
EVENT_TEMPLATES = ["studio/transcript.html#event", "swarms/_event.html"]


def _is_fragment_request(request) -> bool:
    return bool(request.htmx) and not request.htmx.history_restore_request


@login_required
@require_GET
def run_list(request):
    runs = filters.visible_runs(request.user)
    error = None
    try:
        run_filter = filters.parse_run_filter(request.GET)
        page = Paginator(
            filters.table_runs(filters.filter_runs(runs, run_filter)), PAGE_SIZE
        ).get_page(request.GET.get("page"))
    except filters.InvalidFilter as e:
        error, run_filter = e.message, filters.RunFilter()
        page = Paginator(Run.objects.none(), PAGE_SIZE).get_page(1)
    page_runs = list(page.object_list)
    admin_space_ids = set(spaces_for_user(request.user, "admin").values_list("pk", flat=True))
    params = request.GET.copy()
    params.pop("page", None)
    context = {
        "page": page,
        "runs": page_runs,
        "error": error,
        "filter": run_filter,
        "query": params.urlencode(),
        "now": timezone.now(),
        # Poll while something on this page can still change; a fragment
        # without the trigger ends the polling.
        "any_active": any(run.status not in TERMINAL for run in page_runs),
        "admin_space_ids": admin_space_ids,
        "can_bulk": bool(admin_space_ids) and any(r.space_id in admin_space_ids for r in page_runs),
    }
    if _is_fragment_request(request):
        response = render(request, "swarms/run_list.html#run-table", context)
    else:
        context.update(filters.filter_options(request.user, runs))
        response = render(request, "swarms/run_list.html", context)
    patch_vary_headers(response, ("HX-Request",))
    return response


def _map_rows(runs: list[Run]) -> list[dict]:
    """One row per preset (ad hoc last), a cell per run, oldest first: a grid stays
    readable with hundreds of runs where dots on a time axis pile up."""
    groups: dict[str, list[Run]] = {}
    for run in sorted(runs, key=lambda r: (r.created_at, r.pk)):
        groups.setdefault(run.preset_name or filters.AD_HOC, []).append(run)
    names = sorted(n for n in groups if n != filters.AD_HOC)
    if filters.AD_HOC in groups:
        names.append(filters.AD_HOC)
    return [
        {
            "preset": name,
            "is_ad_hoc": name == filters.AD_HOC,
            "cells": groups[name],
            "count": len(groups[name]),
            "by_status": _count_statuses(groups[name]),
            "first": groups[name][0].created_at,
            "last": groups[name][-1].created_at,
        }
        for name in names
    ]


def _count_statuses(runs: list[Run]) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.status] = counts.get(run.status, 0) + 1
    return [(status, counts[status]) for status in RunStatus.values if status in counts]


@login_required
@require_GET
def swarm_map(request):
    now = timezone.now()
    window = request.GET.get("window") or MAP_DEFAULT_WINDOW
    problem = ""
    if window not in MAP_WINDOWS:
        problem = f"Unknown time range {window!r}; choose one of {', '.join(MAP_WINDOWS)}."
        window = MAP_DEFAULT_WINDOW
    start = now - MAP_WINDOWS[window]
    runs = list(
        filters.visible_runs(request.user)
        .filter(created_at__gte=start)
        .select_related("project")
        .only("code", "status", "config", "created_at", "started_at", "finished_at", "prompt",
              "project__name")
        .order_by("-created_at")[:MAP_MAX_RUNS]
    )  # fmt: skip
    context = {
        "rows": _map_rows(runs),
        "start": start,
        "now": now,
        "window": window,
        "windows": MAP_WINDOWS,
        "problem": problem,
        "total": len(runs),
        "truncated": len(runs) == MAP_MAX_RUNS,
        "statuses": RunStatus.choices,
    }
    return render(request, "swarms/map.html", context, status=400 if problem else 200)


def _live_url(run: Run) -> str | None:
    try:
        return reverse("studio-session", args=[run.code])
    except NoReverseMatch:  # the Studio is not mounted
        return None


@login_required
@require_GET
def run_detail(request, code):
    run = get_run_for_user(request.user, code, "view")
    events = list(run.events.order_by("seq"))
    tool_names = {
        str(e.payload.get("id")): e.payload.get("name", "")
        for e in events
        if e.kind == "tool_call" and isinstance(e.payload, dict)
    }
    context = {
        "run": run,
        "events": events,
        "event_template": select_template(EVENT_TEMPLATES),
        "tool_names": tool_names,
        "artifacts": list(run.artifacts.select_related("reviewer")),
        # Reviewers are the space's members ("use"), as in agentloop.review.actions.
        "can_review": request.user.has_perm("teams.use_space", run.space),
        "config_json": json.dumps(run.config, indent=2, sort_keys=True, ensure_ascii=False),
        "secret_env_names": run.config.get("secret_env_names") or [],
        "live_url": _live_url(run) if run.status in ACTIVE or run.status == "queued" else None,
        "session_url": _live_url(run),
        "duration_now": timezone.now(),
    }
    return render(request, "swarms/run_detail.html", context)


@login_required
@require_GET
def run_traces(request, code):
    """View traces: the run's own trace, shown by the project trace view."""
    run = get_run_for_user(request.user, code, "view")
    worker = run.space.worker_project()
    trace_id = worker_trace.trace_id_for(run)
    if Trace.objects.filter(project=worker, trace_id=trace_id).exists():
        return redirect("trace-detail", worker.pk, trace_id)
    return render(request, "swarms/no_trace.html", {"run": run}, status=404)


def _parse_codes(values) -> list[uuid.UUID]:
    codes = []
    for value in values:
        try:
            codes.append(uuid.UUID(value))
        except (ValueError, TypeError):
            raise ValueError(f"{value!r} is not a run code.") from None
    return codes


def _back(request):
    target = request.POST.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}):
        return redirect(target)
    return redirect("swarms-runs")


@login_required
@require_POST
def bulk_cancel(request):
    """Cancel the selected runs, all or none: every run must be in a space the
    user administers, else 403 and nothing is cancelled."""
    values = request.POST.getlist("run")
    if not values:
        messages.error(request, "Select at least one run to cancel.")
        return _back(request)
    if len(values) > MAX_BULK:
        messages.error(request, f"Cancel at most {MAX_BULK} runs at once.")
        return _back(request)
    try:
        codes = _parse_codes(values)
    except ValueError as e:
        messages.error(request, str(e))
        return _back(request)
    runs = list(Run.objects.filter(code__in=codes).select_related("project__space"))
    if len(runs) != len(set(codes)):
        raise Http404("No such run.")
    for space_id in {run.space_id for run in runs}:
        get_space_for_user(request.user, space_id, "admin")  # 404 / 403 before any change

    cancelled, finished, refused = [], [], []
    for run in runs:
        try:
            (cancelled if actions.cancel(request.user, run) else finished).append(run)
        except PermissionDenied:
            refused.append(run)
    if cancelled:
        messages.success(
            request, f"Cancelled {len(cancelled)} run{'' if len(cancelled) == 1 else 's'}."
        )
    if finished:
        messages.info(request, "Already finished or stopping: " + _short_codes(finished) + ".")
    if refused:
        messages.error(request, "Not allowed to cancel: " + _short_codes(refused) + ".")
    return _back(request)


def _short_codes(runs: list[Run]) -> str:
    return ", ".join(run.code.hex[:8] for run in runs)
