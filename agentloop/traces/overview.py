"""The explorer's overview: volume, error rate, latency p50/p95, tokens and cost
over time, as server-rendered SVG charts (no script, nothing loaded from
elsewhere), over the explorer's own filters and time window.

The numbers are analytics.aggregate's (the same as `GET …/analytics`), in
about CHART_BUCKETS buckets of a round size; this module only lays them out:
each chart is a list of bars or polylines in a fixed viewBox, with its
largest value as the scale and a label per bar for the hover title.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from agentloop.traces.analytics import aggregate, parse_analytics_query

CHART_BUCKETS = 48
WIDTH, HEIGHT = 480, 90
# Round bucket sizes, smallest first: the first that keeps the count at most CHART_BUCKETS.
BUCKET_SIZES = [
    ("1m", 60),
    ("5m", 300),
    ("15m", 900),
    ("30m", 1800),
    ("1h", 3600),
    ("3h", 10800),
    ("6h", 21600),
    ("12h", 43200),
    ("1d", 86400),
    ("7d", 604800),
    ("30d", 2592000),
]
QUICK_RANGES = [
    ("1h", timedelta(hours=1)),
    ("24h", timedelta(hours=24)),
    ("7d", timedelta(days=7)),
    ("30d", timedelta(days=30)),
]


def bucket_for(seconds: float) -> str:
    for label, size in BUCKET_SIZES:
        if seconds / size <= CHART_BUCKETS:
            return label
    return BUCKET_SIZES[-1][0]


def quick_ranges(now: datetime | None = None) -> list[dict]:
    """Links' start values for the last hour, day, week, month (the picker's format)."""
    now = now or timezone.now()
    return [
        {"label": label, "start": (now - span).strftime("%Y-%m-%dT%H:%M")}
        for label, span in QUICK_RANGES
    ]


def overview(project, params, now: datetime | None = None) -> dict:
    """The charts of the spans matching the explorer's params (InvalidFilter if bad)."""
    now = now or timezone.now()
    first = parse_analytics_query(params, now=now)
    seconds = (first.end - first.start).total_seconds()
    query_params = params.copy() if hasattr(params, "copy") else dict(params)
    query_params["bucket"] = bucket_for(seconds)
    for key in ("group_by", "baseline", "cursor"):
        query_params.pop(key, None)
    result = aggregate(project, parse_analytics_query(query_params, now=now))
    buckets = result["total"]["buckets"]
    total = result["total"]
    charts = [
        _bars("Spans", buckets, "spans", lambda v: f"{v:,}"),
        _line("Error rate", buckets, [("error_rate", "errors")], _percent),
        _line(
            "Latency p50 / p95",
            buckets,
            [("p50_ms", "p50"), ("p95_ms", "p95")],
            lambda v: f"{v:,.0f} ms",
        ),
        _bars("Tokens", buckets, "total_tokens", lambda v: f"{v:,}"),
    ]
    if total.get("cost") is not None:
        charts.append(_bars("Cost", buckets, "cost", lambda v: f"${v:,.4f}"))
    return {
        "charts": charts,
        "total": total,
        "window": result["window"],
        "bucket": query_params["bucket"],
    }


def _percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def _label(bucket: dict) -> str:
    return bucket["start"].strftime("%Y-%m-%d %H:%M")


def _bars(title: str, buckets: list[dict], key: str, fmt) -> dict:
    values = [b.get(key) or 0 for b in buckets]
    top = max(values, default=0) or 1
    width = WIDTH / max(len(buckets), 1)
    bars = []
    for i, (bucket, value) in enumerate(zip(buckets, values, strict=True)):
        height = HEIGHT * value / top
        bars.append(
            {
                "x": round(i * width, 2),
                "y": round(HEIGHT - height, 2),
                "width": round(max(width - 1, 0.5), 2),
                "height": round(height, 2),
                "title": f"{_label(bucket)}: {fmt(value)}",
            }
        )
    return {
        "title": title,
        "kind": "bars",
        "bars": bars,
        "top": fmt(max(values, default=0)),
        "width": WIDTH,
        "height": HEIGHT,
    }


def _line(title: str, buckets: list[dict], series: list[tuple[str, str]], fmt) -> dict:
    present = [b[key] for b in buckets for key, _ in series if b.get(key) is not None]
    top = max(present, default=0) or 1
    step = WIDTH / max(len(buckets) - 1, 1)
    lines = []
    for key, name in series:
        segments, points, dots = [], [], []
        for i, bucket in enumerate(buckets):
            value = bucket.get(key)
            if value is None:  # no spans in this bucket: a gap, not a zero
                if points:
                    segments.append(" ".join(points))
                    points = []
                continue
            x, y = round(i * step, 2), round(HEIGHT - HEIGHT * value / top, 2)
            points.append(f"{x},{y}")
            dots.append({"x": x, "y": y, "title": f"{_label(bucket)}: {name} {fmt(value)}"})
        if points:
            segments.append(" ".join(points))
        lines.append({"name": name, "segments": segments, "dots": dots})
    return {
        "title": title,
        "kind": "lines",
        "lines": lines,
        "top": fmt(max(present, default=0)),
        "width": WIDTH,
        "height": HEIGHT,
        "series": [name for _, name in series],
    }
