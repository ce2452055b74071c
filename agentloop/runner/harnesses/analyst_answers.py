"""The analyst's answers to follow-up questions. Standard library only, no model.

A follow-up on an analyst session (a continued run, see docs/harnesses.md)
is answered from the same findings the session reported: the analyst reads the
window its first answer named, runs Signal's method over it again (the same
data and window give the same issues) and answers from them, or, for a span
name of the project, from the store's figures for that name.

What it understands, by the words of the question (case-insensitive):

- an issue by number ("issue 2", "#2", "the second") or by words of its title
  or component; otherwise the top issue;
- evidence / traces / example → the issue's evidence trace ids;
- since / when / start → its onset; where / which / concentrate → where it is;
- fix / should / do → what to look at; label / eval → the proposed labels;
- a span name of the project → its spans, errors, error rate and p95 in the window;
- anything else → the findings in one list, and what it can answer.

Every answer names the issue or the figures it comes from; nothing is invented.
"""

from __future__ import annotations

import re
from collections.abc import Callable

ORDINALS = {
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
}
WINDOW_RE = re.compile(r"\((\d{4}-\d\d-\d\dT[0-9:.]+Z?) to (\d{4}-\d\d-\d\dT[0-9:.]+Z?)\)")
# How the analyst's summary of a finished investigation begins (analyst.investigate).
FINISHED_PREFIX = "Wrote artifacts/investigation.md"
STOP_WORDS = frozenset(
    "a an and are about any at be by did do does for from how in is it its me of on or "
    "show tell that the this to was what when where which who why with you your".split()
)
TOPICS = {
    "evidence": ("evidence", "trace", "traces", "example", "examples", "sample"),
    "since": ("since", "when", "start", "started", "onset", "begin", "began"),
    "where": ("where", "which", "concentrate", "concentrated", "dimension"),
    "fix": ("fix", "should", "recommend", "look", "next"),
    "labels": ("label", "labels", "eval", "evals", "annotation", "annotations"),
}


def window_from_history(history: list[dict]) -> tuple[str, str] | None:
    """The (start, end) the session's investigation named, e.g. "(2026-…Z to 2026-…Z)",
    once it was finished (its report written); None before."""
    finished = any(
        message.get("role") == "assistant"
        and str(message.get("text") or "").startswith(FINISHED_PREFIX)
        for message in history
    )
    if not finished:
        return None
    for message in history:
        if message.get("role") != "assistant":
            continue
        found = WINDOW_RE.search(str(message.get("text") or ""))
        if found:
            return found.group(1), found.group(2)
    return None


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9_.:/-]+", text.lower())


def _topics(words: list[str]) -> list[str]:
    return [topic for topic, keys in TOPICS.items() if any(word in keys for word in words)]


def pick_issue(question: str, issues: list) -> tuple[int, object] | None:
    """(number, issue) the question is about: by number, ordinal, then title words."""
    if not issues:
        return None
    lowered = question.lower()
    found = re.search(r"(?:issue|finding|number|#)\s*#?(\d+)", lowered)
    number = int(found.group(1)) if found else None
    if number is None:
        for word, value in ORDINALS.items():
            if re.search(rf"\b{word}\b", lowered):
                number = value
                break
    if number is not None and 1 <= number <= len(issues):
        return number, issues[number - 1]
    words = {w for w in _words(question) if w not in STOP_WORDS and len(w) > 2}
    best, best_score = None, 0
    for index, issue in enumerate(issues, 1):
        name = str((issue.component or {}).get("name") or "").lower()
        title_words = set(_words(issue.title)) | ({name} if name else set())
        score = len(words & title_words) + (3 if name and name in question.lower() else 0)
        if score > best_score:
            best, best_score = (index, issue), score
    return best


def _issue_line(number: int, issue) -> str:
    return f"{number}. **{issue.title}** ({issue.severity}, {_count(issue.affected, 'trace')})"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _rate(value) -> str:
    return "–" if value is None else f"{value:.1%}"


def describe_issue(number: int, issue, topics: list[str]) -> list[str]:
    lines = [f"About issue {_issue_line(number, issue)[3:]}:", ""]
    everything = not topics or topics == ["labels"]
    if everything or "where" in topics:
        for where in issue.where or []:
            share = f", {where['share']:.0%} of it" if where.get("share") is not None else ""
            lines.append(f"- Where: {where['dimension']}={where['value']}{share}")
        if not issue.where:
            lines.append("- Where: spread out, no one dimension stands out")
    if everything or "since" in topics:
        onset = (issue.since or {}).get("onset")
        lines.append(f"- Since: {onset}" if onset else "- Since: the whole window")
    if everything or "evidence" in topics:
        evidence = issue.evidence[:10]
        if evidence:
            lines.append("- Evidence traces: " + ", ".join(f"`{t}`" for t in evidence))
            more = len(issue.evidence) - len(evidence)
            if more > 0:
                lines.append(f"  and {_count(more, 'more trace')}")
        else:
            lines.append("- Evidence traces: none sampled")
    if everything or "fix" in topics:
        lines.append(f"- What to look at: {issue.proposed_fix or 'nothing proposed'}")
    return lines


def describe_labels(labels: list[dict]) -> list[str]:
    if not labels:
        return ["I proposed no eval labels in this session."]
    by_kind: dict[tuple, int] = {}
    for label in labels:
        key = (label["name"], label["label"])
        by_kind[key] = by_kind.get(key, 0) + 1
    lines = [f"I proposed {_count(len(labels), 'eval label')} (they wait in the review queue):"]
    lines += [f"- {name}={value}: {_count(n, 'span')}" for (name, value), n in by_kind.items()]
    return lines


def describe_name(name: str, stats: dict) -> list[str]:
    total = stats.get("total") or {}
    return [
        f"`{name}` in the window: {_count(int(total.get('spans') or 0), 'span')} in "
        f"{_count(int(total.get('traces') or 0), 'trace')}, "
        f"{_count(int(total.get('errors') or 0), 'error')} ({_rate(total.get('error_rate'))}), "
        f"p95 {total.get('p95_ms') if total.get('p95_ms') is not None else '–'} ms."
    ]


def answer(
    question: str,
    issues: list,
    labels: list[dict],
    names: list[str],
    name_stats: Callable[[str], dict],
) -> str:
    """The reply to one follow-up, in markdown."""
    lowered = question.lower()
    topics = _topics(_words(question))
    explicit = re.search(r"(?:issue|finding|#)\s*#?\d+", lowered) or any(
        re.search(rf"\b{word}\b", lowered) for word in ORDINALS
    )
    lines: list[str] = []
    # The longest span name the question mentions: "refund-tool" before "tool".
    mentioned = sorted((n for n in names if n and n.lower() in lowered), key=len, reverse=True)
    picked = pick_issue(question, issues)
    if picked is None and issues and [t for t in topics if t != "labels"]:
        picked = (1, issues[0])  # "what is the evidence?" is about the top issue
    if mentioned:
        lines += describe_name(mentioned[0], name_stats(mentioned[0]))
        if picked and not explicit and (picked[1].component or {}).get("name") not in mentioned:
            picked = None  # a question about a name, not about an issue
    if "labels" in topics:
        if lines:
            lines.append("")
        lines += describe_labels(labels)
    if picked is not None and (explicit or topics != ["labels"]):
        if lines:
            lines.append("")
        lines += describe_issue(picked[0], picked[1], [t for t in topics if t != "labels"])
    if not lines:
        if issues:
            lines.append(f"I found {_count(len(issues), 'issue')} in this window:")
            lines += [_issue_line(n, issue) for n, issue in enumerate(issues, 1)]
        else:
            lines.append("I found no issue in this window.")
    lines += [
        "",
        "Ask about an issue by number or name (its evidence, since when, where, what to "
        "fix), about the eval labels, or about a span name of the project.",
    ]
    return "\n".join(lines)
