"""The seeded prompt templates of the Studio gallery.

A template pre-fills the task prompt of a new session and names the settings
the person still has to fill in (the project to bind, and any `<placeholder>`
left in the prompt). Code, not rows: they ship with the product and change
with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

PLACEHOLDER = re.compile(r"<([^<>\n]{1,60})>")


@dataclass(frozen=True)
class PromptTemplate:
    slug: str
    title: str
    summary: str
    prompt: str
    harness: str = "analyst"
    needs: tuple[str, ...] = field(default=("project",))

    @property
    def placeholders(self) -> list[str]:
        """The `<...>` blanks in the prompt, in order, each once."""
        seen: list[str] = []
        for name in PLACEHOLDER.findall(self.prompt):
            if name not in seen:
                seen.append(name)
        return seen

    @property
    def still_to_fill(self) -> list[str]:
        return list(self.needs) + self.placeholders


TEMPLATES: tuple[PromptTemplate, ...] = (
    PromptTemplate(
        slug="root-cause-tool-failure",
        title="Root-cause a tool failure",
        summary="Find the traces where a tool fails, group the failures and explain the cause.",
        prompt=(
            "The tool <tool name> has been failing since <when it started>.\n"
            "Find the failing TOOL spans, group them by error message and input shape, "
            "and explain the most likely root cause with links to three representative traces. "
            "Write your findings as an investigation."
        ),
    ),
    PromptTemplate(
        slug="draft-eval-labels",
        title="Draft eval labels for failing responses",
        summary="Read failing LLM responses and propose eval labels for a person to review.",
        prompt=(
            "Look at the LLM spans of the last <time window> whose responses look wrong "
            "(errors, refusals, empty or truncated answers). For each, propose an eval label "
            "`<label name>` with a score and a one-sentence explanation. Submit them as "
            "eval-label proposals; do not apply them."
        ),
    ),
    PromptTemplate(
        slug="find-latency-regressions",
        title="Find latency regressions",
        summary="Compare span latencies before and after a point in time and rank the regressions.",
        prompt=(
            "Compare the p50 and p95 latency of each span name in the <time window> before and "
            "after <change or deploy time>. Rank the span names that got slower, show the "
            "numbers, and point at example traces for the worst three."
        ),
    ),
    PromptTemplate(
        slug="review-worst-traces",
        title="Review the worst traces of the last day",
        summary="Review the slowest, most expensive and failing traces of the last 24 hours.",
        prompt=(
            "Review the worst traces of the last 24 hours: the slowest, the most expensive in "
            "tokens, and those with errors. For each, say what went wrong and what to change. "
            "Write an investigation with the ten most useful findings first."
        ),
    ),
)


def get_template(slug: str | None) -> PromptTemplate | None:
    return next((t for t in TEMPLATES if t.slug == slug), None)
