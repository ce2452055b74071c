"""The traces explorer, the trace waterfall and the span detail pages."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse

from agentloop.traces.models import SpanAnnotation
from tests.span_factory import DEFAULT_START, make_span

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
T0 = DEFAULT_START


def explorer_url(project):
    return reverse("traces-explorer", args=[project.pk])


def trace_url(project, trace_id):
    return reverse("trace-detail", args=[project.pk, trace_id])


def span_url(project, span):
    return reverse("span-detail", args=[project.pk, span.span_id]) + f"?trace={span.trace_id}"


def rows(page: str) -> list[str]:
    """The span ids of the explorer rows, in page order."""
    return re.findall(r'<tr class="span-row[^"]*" data-span="([0-9a-f]+)"', page)


def waterfall(page: str) -> list[tuple[str, str]]:
    """(span id, depth) of each waterfall row, in page order."""
    return re.findall(r'data-span="([0-9a-f]+)" data-depth="(\d+)"', page)


@pytest.fixture
def trace(project):
    """A small agent trace: agent → (retriever, llm → tool that failed)."""
    tid = "a" * 32
    agent = make_span(
        project,
        trace_id=tid,
        span_id="0" * 15 + "1",
        name="agent",
        kind="AGENT",
        start=T0,
        duration_ms=1000,
        status="OK",
    )
    retrieve = make_span(
        project,
        trace_id=tid,
        span_id="0" * 15 + "2",
        parent=agent,
        name="retrieve",
        kind="RETRIEVER",
        start=T0 + timedelta(milliseconds=10),
        duration_ms=90,
    )
    llm = make_span(
        project,
        trace_id=tid,
        span_id="0" * 15 + "3",
        parent=agent,
        name="llm",
        kind="LLM",
        start=T0 + timedelta(milliseconds=100),
        duration_ms=800,
        model_name="gpt-4o",
        total_tokens=321,
        attributes={"llm.model_name": "gpt-4o", "tenant": "acme", "tag.tags": ["vip", "eu"]},
    )
    tool = make_span(
        project,
        trace_id=tid,
        span_id="0" * 15 + "4",
        parent=llm,
        name="lookup_order",
        kind="TOOL",
        start=T0 + timedelta(milliseconds=500),
        duration_ms=300,
        status="ERROR",
        status_message="order not found",
    )
    return {"id": tid, "agent": agent, "retrieve": retrieve, "llm": llm, "tool": tool}


# --- who may see the pages ----------------------------------------------------


@pytest.mark.parametrize(
    "who,status",
    [
        ("owner", 200),
        ("member", 200),
        ("viewer", 200),
        ("outsider", 404),
    ],
)
def test_each_role_gets_the_trace_pages(client_for, users, project, trace, who, status):
    client = client_for(users[who])
    assert client.get(explorer_url(project)).status_code == status
    assert client.get(trace_url(project, trace["id"])).status_code == status
    assert client.get(span_url(project, trace["llm"])).status_code == status


def test_anonymous_is_sent_to_login_from_every_trace_page(client_for, project, trace):
    client = client_for(None)
    for url in (
        explorer_url(project),
        trace_url(project, trace["id"]),
        span_url(project, trace["llm"]),
    ):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_pages_of_another_project_do_not_reach_this_projects_spans(
    client_for, dave, project, other_project, trace
):
    # Dave owns other_project; asking for Acme's trace and span through it finds nothing.
    client = client_for(dave)
    assert client.get(trace_url(other_project, trace["id"])).status_code == 404
    assert client.get(span_url(other_project, trace["llm"])).status_code == 404
    assert rows(client.get(explorer_url(other_project)).content.decode()) == []


# --- the explorer -------------------------------------------------------------


def test_the_explorer_lists_spans_newest_first_with_their_columns(
    client_for, alice, project, trace
):
    page = client_for(alice).get(explorer_url(project)).content.decode()
    assert rows(page) == [
        trace["tool"].span_id,
        trace["llm"].span_id,
        trace["retrieve"].span_id,
        trace["agent"].span_id,
    ]
    assert 'id="span-filters"' in page
    assert f'hx-get="{explorer_url(project)}"' in page
    assert "gpt-4o" in page
    assert "321" in page
    assert "800 ms" in page
    assert "2026-01-01 12:00:00" in page
    assert f'href="{trace_url(project, trace["id"])}?span=' in page


def test_error_spans_are_highlighted(client_for, alice, project, trace):
    page = client_for(alice).get(explorer_url(project)).content.decode()
    assert f'<tr class="span-row is-error" data-span="{trace["tool"].span_id}"' in page
    assert f'<tr class="span-row" data-span="{trace["llm"].span_id}"' in page


def test_an_htmx_request_gets_only_the_table_fragment(client_for, alice, project, trace):
    response = client_for(alice).get(explorer_url(project), {"kind": "LLM"}, **HTMX)
    page = response.content.decode()
    assert page.lstrip().startswith('<div id="span-table">')
    assert "<html" not in page
    assert 'id="span-filters"' not in page
    assert rows(page) == [trace["llm"].span_id]
    assert "HX-Request" in response["Vary"]


@pytest.mark.parametrize(
    "params,expected",
    [
        ({"kind": "TOOL"}, ["tool"]),
        ({"status": "ERROR"}, ["tool"]),
        ({"name": "retrieve"}, ["retrieve"]),
        ({"root": "true"}, ["agent"]),
        ({"attr": "tenant=acme"}, ["llm"]),
        ({"attr": "tag.tags=eu"}, ["llm"]),  # a list attribute, by membership
        ({"attr": "tag.tags=us"}, []),
        ({"start": "2026-01-01T12:00:00.050", "end": "2026-01-01T12:00:00.400"}, ["llm"]),
        ({"annotation": "correct:no"}, ["llm"]),
    ],
)
def test_filters_narrow_the_rows(client_for, alice, project, trace, params, expected):
    SpanAnnotation.objects.create(
        project=project, span=trace["llm"], name="correct", label="no", annotator_kind="HUMAN"
    )
    SpanAnnotation.objects.create(
        project=project, span=trace["agent"], name="correct", label="yes", annotator_kind="HUMAN"
    )
    page = client_for(alice).get(explorer_url(project), params, **HTMX).content.decode()
    assert rows(page) == [trace[name].span_id for name in expected]


def test_the_trace_id_filter_keeps_one_trace(client_for, alice, project, trace):
    other = make_span(project, trace_id="b" * 32, name="elsewhere")
    page = client_for(alice).get(explorer_url(project), {"trace_id": "b" * 32}).content.decode()
    assert rows(page) == [other.span_id]


def test_filters_are_kept_in_the_form_after_a_full_reload(client_for, alice, project, trace):
    page = (
        client_for(alice)
        .get(explorer_url(project), {"kind": "LLM", "attr": "tenant=acme", "root": "true"})
        .content.decode()
    )
    assert '<option value="LLM" selected>' in page
    assert 'value="tenant=acme"' in page
    assert 'value="true" checked' in page


def test_a_bad_time_shows_the_message_above_an_empty_table(client_for, alice, project, trace):
    response = client_for(alice).get(explorer_url(project), {"start": "yesterday"}, **HTMX)
    assert response.status_code == 200
    page = response.content.decode()
    assert "start: not an ISO 8601 time: &#x27;yesterday&#x27;" in page
    assert page.index("filter-error") < page.index("<table")
    assert rows(page) == []


def test_a_bad_filter_on_the_full_page_is_shown_too(client_for, alice, project, trace):
    response = client_for(alice).get(explorer_url(project), {"kind": "SPACESHIP"})
    assert response.status_code == 200
    assert "kind: must be one of" in response.content.decode()


def test_a_forged_cursor_is_a_message_not_a_crash(client_for, alice, project, trace):
    response = client_for(alice).get(explorer_url(project), {"cursor": "not-a-cursor"})
    assert response.status_code == 200
    assert "cursor: not a cursor this API gave out" in response.content.decode()


def test_no_spans_yet_says_how_to_send_some(client_for, alice, project):
    page = client_for(alice).get(explorer_url(project)).content.decode()
    assert "No spans yet." in page


def test_no_match_says_so(client_for, alice, project, trace):
    page = client_for(alice).get(explorer_url(project), {"name": "nope"}).content.decode()
    assert "No spans match these filters." in page


def test_load_more_pages_through_every_span_once(client_for, alice, project):
    made = [
        make_span(project, name=f"s{i}", start=T0 + timedelta(seconds=i), kind="LLM")
        for i in range(57)
    ]
    newest_first = [s.span_id for s in reversed(made)]
    client = client_for(alice)
    first = client.get(explorer_url(project), {"kind": "LLM"}).content.decode()
    assert rows(first) == newest_first[:50]
    more = re.search(r'hx-get="([^"]+cursor=[^"]+)"', first).group(1).replace("&amp;", "&")
    assert "kind=LLM" in more  # the filters travel with the cursor

    second = client.get(more, **HTMX)
    page = second.content.decode()
    assert rows(page) == newest_first[50:]
    assert page.lstrip().startswith('<tr class="span-row')  # rows only, appended in place
    assert "<table" not in page
    assert "Load more" not in page


def test_load_more_without_htmx_renders_the_next_page_whole(client_for, alice, project):
    for i in range(51):
        make_span(project, start=T0 + timedelta(seconds=i))
    client = client_for(alice)
    first = client.get(explorer_url(project)).content.decode()
    href = re.search(r'<a class="button" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    page = client.get(href).content.decode()
    assert "<html" in page
    assert len(rows(page)) == 1


def test_explorer_escapes_span_names(client_for, alice, project):
    make_span(project, name="<script>alert(1)</script>")
    page = client_for(alice).get(explorer_url(project)).content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# --- the trace view -----------------------------------------------------------


def test_the_trace_view_nests_spans_in_order(client_for, alice, project, trace):
    page = client_for(alice).get(trace_url(project, trace["id"])).content.decode()
    assert waterfall(page) == [
        (trace["agent"].span_id, "0"),
        (trace["retrieve"].span_id, "1"),
        (trace["llm"].span_id, "1"),
        (trace["tool"].span_id, "2"),
    ]
    assert "4 spans" in page
    assert "1 error" in page


def test_the_trace_view_marks_the_error_span(client_for, alice, project, trace):
    page = client_for(alice).get(trace_url(project, trace["id"])).content.decode()
    marked = re.findall(r'<a class="wf-row is-error[^"]*"\s+data-span="([0-9a-f]+)"', page)
    assert marked == [trace["tool"].span_id]


def test_the_waterfall_bars_follow_offset_and_duration(client_for, alice, project, trace):
    page = client_for(alice).get(trace_url(project, trace["id"])).content.decode()
    bars = re.findall(r'class="wf-bar" style="margin-left: ([\d.]+)%; width: ([\d.]+)%"', page)
    # Trace is 1000 ms: agent 0+1000, retrieve 10+90, llm 100+800, tool 500+300.
    assert bars == [
        ("0.000", "100.000"),
        ("1.000", "9.000"),
        ("10.000", "80.000"),
        ("50.000", "30.000"),
    ]


def test_each_span_links_to_its_detail_for_htmx_and_without(client_for, alice, project, trace):
    page = client_for(alice).get(trace_url(project, trace["id"])).content.decode()
    detail = span_url(project, trace["tool"])
    assert f'href="{detail}"' in page
    assert f'hx-get="{detail}" hx-target="#span-panel"' in page


def test_the_side_panel_shows_the_chosen_span(client_for, alice, project, trace):
    client = client_for(alice)
    first = client.get(trace_url(project, trace["id"])).content.decode()
    assert f'id="span-detail" data-span="{trace["agent"].span_id}"' in first
    chosen = client.get(trace_url(project, trace["id"]), {"span": trace["tool"].span_id})
    page = chosen.content.decode()
    assert f'id="span-detail" data-span="{trace["tool"].span_id}"' in page
    assert "order not found" in page


def test_an_unknown_trace_is_404(client_for, alice, project, trace):
    assert client_for(alice).get(trace_url(project, "f" * 32)).status_code == 404


def test_a_span_whose_parent_is_missing_is_shown_as_an_orphan(client_for, alice, project):
    make_span(project, trace_id="c" * 32, span_id="1" * 16, name="root")
    make_span(project, trace_id="c" * 32, span_id="2" * 16, parent="9" * 16, name="lost")
    page = client_for(alice).get(trace_url(project, "c" * 32)).content.decode()
    assert [depth for _, depth in waterfall(page)] == ["0", "0"]
    assert "(orphan)" in page


# --- the span detail ----------------------------------------------------------


@pytest.fixture
def hostile_span(project):
    span = make_span(
        project,
        trace_id="d" * 32,
        span_id="e" * 16,
        name="<b>bold</b> call",
        kind="LLM",
        status="ERROR",
        status_message="<img src=x onerror=alert(1)>",
        model_name="claude-x",
        prompt_tokens=10,
        completion_tokens=5,
        total_tokens=15,
        session_id="sess-1",
        user_id="user-9",
        attributes={
            "zeta": "last",
            "alpha": "<script>alert('attr')</script>",
            "input.value": '{"question": "where is <my> order?", "n": 2}',
            "output.value": "plain text, not JSON",
            "llm.token_count.total": 15,
        },
        events=[
            {
                "name": "exception",
                "time": "2026-01-01T12:00:00.050000+00:00",
                "attributes": {
                    "exception.type": "KeyError",
                    "exception.message": "'order' <missing>",
                    "exception.stacktrace": (
                        'Traceback (most recent call last):\n  File "bot.py", line 3\n'
                        "KeyError: order"
                    ),
                },
            },
            {
                "name": "retry",
                "time": "2026-01-01T12:00:00.060000+00:00",
                "attributes": {"attempt": 2},
            },
        ],
    )
    SpanAnnotation.objects.create(
        project=project,
        span=span,
        name="helpful",
        label="<no>",
        score=0.25,
        explanation="<script>alert('ann')</script>",
        annotator_kind="LLM",
    )
    return span


def test_span_detail_shows_everything_about_the_span(client_for, alice, project, hostile_span):
    page = client_for(alice).get(span_url(project, hostile_span)).content.decode()
    assert "<html" in page
    for text in (
        "claude-x",
        "15 total",
        "10 prompt",
        "5 completion",
        "sess-1",
        "user-9",
        "KeyError",
        "Traceback (most recent call last):",
        "retry",
        "0.25",
        "LLM",
        "plain text, not JSON",
        "2026-01-01 12:00:00.000 UTC",
    ):
        assert text in page, text
    # JSON input is pretty-printed (and escaped).
    assert (
        "{\n  &quot;question&quot;: &quot;where is &lt;my&gt; order?&quot;,\n  &quot;n&quot;: 2\n}"
        in page
    )
    # Attributes sorted by key.
    assert page.index(">alpha<") < page.index(">input.value<") < page.index(">zeta<")


def test_span_detail_escapes_everything_it_shows(client_for, alice, project, hostile_span):
    page = client_for(alice).get(span_url(project, hostile_span)).content.decode()
    for raw in ("<script>", "<img src=x", "<b>bold</b>", "<my>", "<missing>", "<no>"):
        assert raw not in page, raw
    assert "&lt;script&gt;alert(&#x27;attr&#x27;)&lt;/script&gt;" in page
    assert "&lt;script&gt;alert(&#x27;ann&#x27;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt; call" in page


def test_span_detail_for_htmx_is_the_panel_fragment(client_for, alice, project, hostile_span):
    response = client_for(alice).get(span_url(project, hostile_span), **HTMX)
    page = response.content.decode()
    assert page.lstrip().startswith('<div class="span-detail" id="span-detail"')
    assert "<html" not in page
    assert "&lt;script&gt;" in page


def test_a_span_in_another_trace_is_not_found(client_for, alice, project, hostile_span):
    url = reverse("span-detail", args=[project.pk, hostile_span.span_id]) + "?trace=" + "0" * 32
    assert client_for(alice).get(url).status_code == 404


def test_span_detail_links_to_the_sessions_spans(client_for, alice, project, hostile_span):
    page = client_for(alice).get(span_url(project, hostile_span)).content.decode()
    assert f'href="{explorer_url(project)}?session_id=sess-1"' in page
    session_page = client_for(alice).get(explorer_url(project), {"session_id": "sess-1"})
    assert rows(session_page.content.decode()) == [hostile_span.span_id]
    assert 'name="session_id" value="sess-1"' in session_page.content.decode()


def test_a_filter_change_pushes_a_url_with_only_the_filters_set(client_for, alice, project, trace):
    response = client_for(alice).get(
        explorer_url(project),
        {"kind": "LLM", "status": "", "name": "", "attr": ["", "tenant=acme"]},
        **HTMX,
    )
    assert response["HX-Push-Url"] == f"{explorer_url(project)}?kind=LLM&attr=tenant%3Dacme"
    assert rows(response.content.decode()) == [trace["llm"].span_id]
