"""Filters that format span data for the trace pages.

They return plain strings, never marked safe: the template escapes them, so an
attribute holding `<script>` is shown as text.
"""

from __future__ import annotations

import json

from django import template

register = template.Library()


@register.filter
def ms(value) -> str:
    """A duration in milliseconds, in the unit a person reads fastest."""
    if value is None or value == "":
        return ""
    value = float(value)
    if value < 1:
        return f"{value * 1000:.0f} µs"
    if value < 1000:
        return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"
    if value < 60_000:
        return f"{value / 1000:.2f} s"
    minutes, seconds = divmod(value / 1000, 60)
    return f"{minutes:.0f} min {seconds:.0f} s"


@register.filter
def pretty(value) -> str:
    """Text as it is, unless it parses as a JSON object or list: then indented JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        if not isinstance(parsed, dict | list):
            return value
        value = parsed
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


@register.filter
def attr_value(value) -> str:
    """An attribute value on one line: strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
