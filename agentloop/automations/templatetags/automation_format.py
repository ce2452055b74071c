"""Filters of the automations, review and Signal pages."""

from __future__ import annotations

import re
from urllib.parse import urlencode

from django import template
from django.urls import reverse
from django.utils.safestring import mark_safe

register = template.Library()

# A trace id in sanitized markdown output: `abc…` became <code>abc…</code>.
_TRACE_CODE = re.compile(r"<code>([0-9a-f]{32})</code>")


@register.filter
def link_trace_ids(html, project_id) -> str:
    """Link every trace id (as inline code) of already-sanitized HTML to its trace view."""

    def link(match):
        url = reverse("trace-detail", args=[project_id, match[1]])
        return f'<a href="{url}"><code>{match[1]}</code></a>'

    return mark_safe(_TRACE_CODE.sub(link, str(html)))


@register.simple_tag
def explorer_url(project_id, params) -> str:
    """The traces explorer showing the spans of a filter (a dict of explorer parameters)."""
    base = reverse("traces-explorer", args=[project_id])
    return f"{base}?{urlencode(sorted(params.items()))}" if params else base
