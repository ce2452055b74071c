"""Filters of the Swarms pages: run durations, and markdown that is safe to show."""

from __future__ import annotations

import markdown as markdown_lib
import nh3
from django import template
from django.utils import timezone
from django.utils.safestring import mark_safe

from agentloop import formatting

register = template.Library()

# What investigation markdown may produce; nh3 strips everything else (scripts,
# event handlers, iframes, styles, javascript: links).
ALLOWED_TAGS = {
    "a", "p", "br", "hr", "strong", "em", "b", "i", "code", "pre", "blockquote",
    "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6",
    "table", "thead", "tbody", "tr", "th", "td", "del",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}}


@register.filter
def safe_markdown(text) -> str:
    html = markdown_lib.markdown(str(text or ""), extensions=["fenced_code", "tables"])
    return mark_safe(
        nh3.clean(
            html,
            tags=ALLOWED_TAGS,
            attributes=ALLOWED_ATTRIBUTES,
            url_schemes={"http", "https", "mailto"},
            link_rel="noopener noreferrer nofollow",
        )
    )


def format_seconds(seconds: float) -> str:
    return formatting.duration(seconds)  # the one rule of every page


@register.simple_tag
def run_duration(run, now=None) -> str:
    """From start to finish, or to now while the run is still going."""
    if run.started_at is None:
        return ""
    end = run.finished_at or now or timezone.now()
    return format_seconds((end - run.started_at).total_seconds())


@register.filter
def short_code(run) -> str:
    return run.code.hex[:8]


@register.filter
def status_word(status) -> str:
    from agentloop.runs.models import RunStatus

    try:
        return RunStatus(status).label.lower()
    except ValueError:
        return str(status)


AUTOMATION_FOOTER = "\n---\nStarted by automation"


@register.filter
def task(prompt) -> str:
    """A run's task as a person wrote it: without the footer an automation adds
    for the agent (agentloop.automations.actions.prompt_for)."""
    text = str(prompt or "")
    cut = text.find(AUTOMATION_FOOTER)
    return text[:cut].strip() if cut >= 0 else text
