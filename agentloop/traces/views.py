"""The traces pages: the span explorer, one trace as a waterfall, one span in detail.

Spans are read only through agentloop.traces.queries, so a filter means the same
thing here as in the REST API. htmx requests get template partials
(django-template-partials): the same `{% partialdef %}` renders the first page
and every refresh.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, QueryDict
from django.shortcuts import render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET
from django_htmx.http import push_url

from agentloop.teams.access import get_project_for_user
from agentloop.traces import openinference, overview, queries
from agentloop.traces.models import Span, SpanKind, StatusCode

EXPLORER_PAGE_SIZE = 50
# The smallest bar drawn in the waterfall, in percent of the trace, so an
# instant span is still a visible mark.
MIN_BAR_PERCENT = 0.4


def _is_fragment_request(request) -> bool:
    # A history restore (back button after the URL was pushed) needs the whole page.
    return bool(request.htmx) and not request.htmx.history_restore_request


@login_required
@require_GET
def explorer(request, project_id):
    project = get_project_for_user(request.user, project_id, "view")
    cursor = request.GET.get("cursor") or None
    error = None
    spans, next_cursor = [], None
    try:
        span_filter = queries.parse_span_filter(request.GET)
        spans, next_cursor = queries.page_spans(
            queries.filter_spans(project, span_filter), cursor, EXPLORER_PAGE_SIZE
        )
    except queries.InvalidFilter as e:
        error = e.message

    # Blank form fields are dropped so the URL says only which filters are set.
    filters = QueryDict(mutable=True)
    for key, values in request.GET.lists():
        kept = [v for v in values if v.strip()]
        if key != "cursor" and kept:
            filters.setlist(key, kept)
    next_params = filters.copy()
    next_params["cursor"] = next_cursor or ""
    charts = None
    if error is None and not cursor:  # "load more" appends rows only
        try:
            charts = overview.overview(project, request.GET)
        except queries.InvalidFilter as e:
            error = e.message
    context = {
        "project": project,
        "overview": charts,
        "quick_ranges": overview.quick_ranges(),
        "spans": spans,
        "error": error,
        "next_query": next_params.urlencode() if next_cursor else None,
        "params": filters,
        "attrs": filters.getlist("attr"),
        "kinds": SpanKind.values,
        "statuses": StatusCode.values,
        "is_filtered": bool(filters),
    }
    template = "traces/explorer.html"
    if _is_fragment_request(request):
        # "Load more" appends rows; a filter change replaces the whole table.
        template += "#span-rows" if cursor else "#span-table"
    response = render(request, template, context)
    if _is_fragment_request(request) and not cursor:
        # A reload or a shared link then shows the same filtered table.
        query = filters.urlencode()
        push_url(response, request.path + (f"?{query}" if query else ""))
    patch_vary_headers(response, ("HX-Request",))
    return response


def _waterfall(tree: dict) -> list[dict]:
    total = tree["duration_ms"] or 0
    rows = []
    for node in tree["rows"]:
        span = node["span"]
        if total > 0:
            left = min(node["offset_ms"] / total * 100, 100.0)
            width = max(span.duration_ms / total * 100, MIN_BAR_PERCENT)
            width = min(width, 100.0 - left) if left < 100 else MIN_BAR_PERCENT
        else:
            left, width = 0.0, 100.0
        rows.append(
            {
                "span": span,
                "depth": node["depth"],
                "indent": f"{node['depth'] * 1.1:.1f}",
                "is_orphan": node["is_orphan"],
                "left": f"{left:.3f}",
                "width": f"{width:.3f}",
            }
        )
    return rows


@login_required
@require_GET
def trace_detail(request, project_id, trace_id):
    project = get_project_for_user(request.user, project_id, "view")
    tree = queries.trace_tree(project, trace_id)
    if tree is None:
        raise Http404("No such trace in this project.")
    rows = _waterfall(tree)
    wanted = request.GET.get("span")
    selected = next((r["span"] for r in rows if r["span"].span_id == wanted), rows[0]["span"])
    context = {
        "project": project,
        "tree": tree,
        "rows": rows,
        "error_count": sum(1 for r in rows if r["span"].status_code == StatusCode.ERROR),
        "selected": selected,
        **_span_context(selected),
    }
    return render(request, "traces/trace_detail.html", context)


def _span_context(span: Span) -> dict:
    events = []
    for event in span.events or []:
        if not isinstance(event, dict):
            continue
        attributes = event.get("attributes") or {}
        events.append(
            {
                "name": event.get("name", ""),
                "time": event.get("time", ""),
                "is_exception": event.get("name") == "exception",
                "exception_type": attributes.get("exception.type", ""),
                "exception_message": attributes.get("exception.message", ""),
                "stacktrace": attributes.get("exception.stacktrace", ""),
                "attributes": sorted(attributes.items()),
            }
        )
    return {
        "span": span,
        "attributes": sorted((span.attributes or {}).items()),
        "events": events,
        "annotations": sorted(span.annotations.all(), key=lambda a: (a.name, a.identifier)),
        **openinference.span_views(span.attributes),
    }


@login_required
@require_GET
def span_detail(request, project_id, span_id):
    """One span; `?trace=` picks the trace, since span ids are unique per trace only."""
    project = get_project_for_user(request.user, project_id, "view")
    spans = Span.objects.filter(project=project, span_id=span_id)
    trace_id = request.GET.get("trace")
    if trace_id:
        spans = spans.filter(trace_id=trace_id)
    span = spans.prefetch_related("annotations").order_by("-start_time", "-id").first()
    if span is None:
        raise Http404("No such span in this project.")
    context = {"project": project, **_span_context(span)}
    template = "traces/span_detail.html"
    if _is_fragment_request(request):
        template += "#span-detail"
    response = render(request, template, context)
    patch_vary_headers(response, ("HX-Request",))
    return response


SESSION_TRACES = 500


@login_required
@require_GET
def session_detail(request, project_id, session_id):
    """A session's traces in the order they happened: each root span's input and output."""
    project = get_project_for_user(request.user, project_id, "view")
    roots = list(
        Span.objects.filter(project=project, session_id=session_id, parent_span_id="").order_by(
            "start_time", "id"
        )[: SESSION_TRACES + 1]
    )
    if not roots:
        raise Http404("No such session in this project.")
    context = {
        "project": project,
        "session_id": session_id,
        "turns": roots[:SESSION_TRACES],
        "truncated": len(roots) > SESSION_TRACES,
        "most": SESSION_TRACES,
    }
    return render(request, "traces/session_detail.html", context)
