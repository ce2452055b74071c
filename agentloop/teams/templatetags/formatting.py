"""Template builtins for agentloop.formatting: `{% when %}`, duration, count, money."""

from __future__ import annotations

from datetime import UTC

from django import template
from django.utils import timezone
from django.utils.html import format_html

from agentloop import formatting

register = template.Library()


@register.simple_tag
def when(value, style: str = "", zone: str = ""):
    """<time datetime="UTC ISO" data-style>2026-12-03 07:33 CET</time>, or — for none.

    `zone` (an IANA name) writes it in that zone instead of the viewer's, named:
    a cron's times are the automation's ("2026-12-04 02:00 CET, Europe/Paris").
    """
    if value is None or value == "":
        return formatting.EMPTY
    if isinstance(value, str):
        return value
    shown = formatting.moment(value, style, formatting.zone_named(zone) if zone else None)
    return format_html(
        '<time datetime="{}" data-style="{}" title="{}">{}</time>',
        value.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        style or "moment",
        formatting.moment(value, zone=UTC),
        f"{shown}, {zone}" if zone else shown,
    )


@register.filter
def duration(value) -> str:
    return formatting.duration(value)


@register.filter
def duration_until(start, end) -> str:
    """The time from `start` to `end` (or now, for a run still going)."""
    if start is None:
        return formatting.EMPTY
    return formatting.duration((end or timezone.now()) - start)


@register.filter
def count(value, noun: str) -> str:
    """{{ n|count:"turn" }} → "1 turn" / "2 turns"; "entry,entries" names both forms."""
    singular, _, plural = str(noun).partition(",")
    return formatting.count(value, singular, plural or None)


@register.filter
def money(value) -> str:
    return formatting.money(value)


@register.filter
def moment(value, style: str = "") -> str:
    """The same text as {% when %}, without the <time> element (for attributes)."""
    return formatting.moment(value, style) if value else formatting.EMPTY
