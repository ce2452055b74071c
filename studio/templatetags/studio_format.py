"""Template filters of the Studio: markdown that is safe to show, and compact JSON."""

from __future__ import annotations

import json
import threading

import markdown as markdown_lib
import nh3
from django import template
from django.utils.safestring import mark_safe

register = template.Library()

# What assistant markdown may produce; everything else (scripts, event
# handlers, iframes, styles) is stripped by nh3 before it reaches the page.
ALLOWED_TAGS = {
    "a", "p", "br", "hr", "strong", "em", "b", "i", "code", "pre", "blockquote",
    "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6",
    "table", "thead", "tbody", "tr", "th", "td", "del",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}}


_local = threading.local()


def _converter() -> markdown_lib.Markdown:
    """One Markdown instance per thread: building one costs more than converting
    a message, and an instance must not be shared between threads."""
    if not hasattr(_local, "converter"):
        _local.converter = markdown_lib.Markdown(extensions=["fenced_code", "tables"])
    return _local.converter


@register.filter
def markdown(text) -> str:
    html = _converter().reset().convert(str(text or ""))
    return mark_safe(
        nh3.clean(
            html,
            tags=ALLOWED_TAGS,
            attributes=ALLOWED_ATTRIBUTES,
            url_schemes={"http", "https", "mailto"},
            link_rel="noopener noreferrer nofollow",
        )
    )


@register.filter
def pretty_json(value) -> str:
    """Tool input as readable JSON (escaped by the template like any text)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        return str(value)


@register.filter
def get_item(mapping, key):
    if not mapping or key is None:
        return ""
    return mapping.get(str(key), "")


@register.filter
def status_label(state) -> str:
    from agentloop.runs.models import RunStatus

    try:
        return RunStatus(state).label
    except ValueError:
        return str(state or "")
