"""The explorer's overview charts: volume, error rate, latency, tokens, cost over the window."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from agentloop.traces import overview
from tests.span_factory import make_span

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
WINDOW = {"start": "2026-03-01T00:00", "end": "2026-03-01T04:00"}


@pytest.mark.parametrize(
    ("seconds", "bucket"),
    [(3600, "5m"), (4 * 3600, "5m"), (24 * 3600, "30m"), (7 * 86400, "6h"), (30 * 86400, "1d")],
)
def test_the_bucket_keeps_a_chart_under_fifty_bars(seconds, bucket):
    assert overview.bucket_for(seconds) == bucket


def chart(page: str, name: str) -> str:
    start = page.index(f'data-chart="{name}"')
    return page[start : page.index("</figure>", start)]


def test_the_charts_show_each_buckets_numbers(client_for, carol, project):
    for minutes in (1, 2, 3):
        make_span(project, start=T0 + timedelta(minutes=minutes), duration_ms=100, total_tokens=10)
    make_span(project, start=T0 + timedelta(hours=1), status="ERROR", duration_ms=900)
    make_span(project, start=T0 + timedelta(hours=5), name="outside the window")

    page = client_for(carol).get(reverse("traces-explorer", args=[project.pk]), WINDOW)
    page = page.content.decode()

    spans = chart(page, "spans")
    bars = re.findall(r"<title>([^<]+)</title>", spans)
    assert len(bars) == 48  # 4 hours in 5-minute buckets
    assert "2026-03-01 00:00: 3" in bars
    assert "2026-03-01 01:00: 1" in bars
    assert sum(int(b.rsplit(": ", 1)[1]) for b in bars) == 4
    # Bar heights follow the counts: the 3-span bar is full height, the other a third.
    heights = [float(h) for h in re.findall(r'height="([\d.]+)"><title>', spans)]
    assert sorted(h for h in heights if h)[-2:] == [pytest.approx(30.0), pytest.approx(90.0)]

    errors = re.findall(r"<title>([^<]+)</title>", chart(page, "error-rate"))
    assert errors == ["2026-03-01 00:00: errors 0.0%", "2026-03-01 01:00: errors 100.0%"]
    latency = chart(page, "latency-p50-p95")
    assert "2026-03-01 01:00: p95 900 ms" in latency
    assert "2026-03-01 00:00: p50 100 ms" in latency
    assert "2026-03-01 00:00: 30" in chart(page, "tokens")
    assert "4 spans, 4 traces, 1 error." in page  # one count rule: "1 error"


def test_the_charts_follow_the_filters(client_for, alice, project):
    make_span(project, start=T0 + timedelta(minutes=1), kind="LLM")
    make_span(project, start=T0 + timedelta(minutes=1), kind="TOOL")

    page = client_for(alice).get(
        reverse("traces-explorer", args=[project.pk]), {**WINDOW, "kind": "LLM"}
    )

    assert "2026-03-01 00:00: 1" in chart(page.content.decode(), "spans")


def test_date_pickers_and_quick_ranges(client_for, alice, project):
    page = client_for(alice).get(reverse("traces-explorer", args=[project.pk])).content.decode()

    assert '<input type="datetime-local" name="start"' in page
    assert '<input type="datetime-local" name="end"' in page
    ranges = page[page.index('id="quick-ranges"') :]
    assert re.findall(r">(\w+)</a>", ranges[: ranges.index("</span>")]) == [
        "1h",
        "24h",
        "7d",
        "30d",
    ]


def test_a_bad_window_is_said_not_charted(client_for, alice, project):
    response = client_for(alice).get(
        reverse("traces-explorer", args=[project.pk]), {"start": "yesterday-ish"}
    )
    page = response.content.decode()
    assert "not an ISO 8601 time" in page
    assert 'id="overview"' not in page
