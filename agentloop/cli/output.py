"""What the CLI prints: tables (rich) or JSON, and a transcript line per event.

rich is imported when something is printed with it, not with this module: a
command that answers in JSON, fails, or only shows --help never pays for it
(docs/benchmarks.md, "The CLI"). `output.console` and `output.errors` are made
on first use (a module __getattr__, PEP 562).
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

console: Console
errors: Console


def __getattr__(name: str):
    # Only attribute access from outside (`output.console`) comes here; this
    # module's own functions use _console() for the same object.
    if name in ("console", "errors"):
        from rich.console import Console

        made = (
            Console(highlight=False, soft_wrap=True)
            if name == "console"
            else Console(stderr=True, highlight=False)
        )
        globals()[name] = made
        return made
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _console() -> Console:
    return globals().get("console") or __getattr__("console")


def fail(message: str) -> None:
    """An error line on stderr, as it is (no markup, no rich)."""
    sys.stderr.write(message + "\n")


def pick(row: dict, column: str):
    """A column may be dotted: `project.name`."""
    value = row
    for part in column.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _width(text: str) -> int:
    """Terminal cells: East Asian wide and full-width characters take two."""
    if text.isascii():
        return len(text)
    import unicodedata  # a C extension: loaded only for a table that needs it

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _row_line(cells: list[str], widths: list[int]) -> str:
    padded = [cell + " " * (w - _width(cell)) for cell, w in zip(cells, widths, strict=True)]
    return "  ".join(padded[:-1] + cells[-1:])  # the last column is not padded


def table_lines(rows: list[dict], columns: list[str]) -> list[str]:
    """A list as plain aligned columns, one line per row, as `kubectl get` and
    `docker ps` print them: what a reader scans and what grep, cut and awk take.
    Not rich's Table: it measures every cell to wrap it, 55 ms for 100 sessions
    and 550 ms for 1,000, against 0.5 and 5 ms for this (docs/benchmarks.md,
    "The CLI"). A cell is one line: its whitespace runs become single spaces."""
    header = list(columns)  # as --columns names them
    body = [[" ".join(_cell(pick(row, c)).split()) for c in columns] for row in rows]
    widths = [max(_width(line[i]) for line in [header, *body]) for i in range(len(columns))]
    return [_row_line(line, widths).rstrip() for line in [header, *body]]


def emit(data, output: str, columns: list[str] | None = None) -> None:
    """Rows (a list of dicts) or one object, as a table or as JSON."""
    if output == "json":
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        return
    if isinstance(data, dict):
        # One object: a grid of field and value, by rich, which wraps long
        # values (an issue's overview, a system prompt) to the terminal.
        from rich.table import Table

        table = Table(show_header=False, box=None, pad_edge=False)
        table.add_column(style="bold")
        table.add_column()
        for key in columns or list(data):
            table.add_row(key, _cell(pick(data, key)))
        _console().print(table)
        return
    if not data:
        sys.stdout.write("(none)\n")
        return
    sys.stdout.write("\n".join(table_lines(data, columns or list(data[0]))) + "\n")


def event_text(event: dict) -> Text:
    """One transcript line, as the session page shows the event."""
    from rich.text import Text

    payload = event.get("payload") or {}
    kind, source = event.get("kind"), event.get("source")
    seq = Text(f"{event.get('seq'):>4} ", style="dim")
    if kind == "message":
        who = payload.get("author") or ("you" if source == "user" else "agent")
        style = "cyan" if source == "user" else ""
        return seq + Text(f"{who}: ", style="bold " + style) + Text(str(payload.get("text", "")))
    if kind == "tool_call":
        args = payload.get("input")
        args = json.dumps(args)[:200] if args is not None else ""
        return seq + Text(f"⚙ {payload.get('name', 'tool')} ", style="yellow") + Text(args)
    if kind == "tool_result":
        text = str(payload.get("output", payload.get("text", "")))
        return seq + Text("  ↳ ", style="yellow") + Text(text[:300].replace("\n", " "))
    if kind == "status":
        detail = payload.get("detail") or ""
        return (
            seq
            + Text(f"· {payload.get('state', '')}", style="magenta")
            + Text(f" {detail}" if detail else "")
        )
    if kind == "artifact":
        return seq + Text("▣ artifact ", style="green") + Text(str(payload.get("name", "")))
    if kind == "error":
        return seq + Text("✗ ", style="red") + Text(str(payload.get("message", payload)))
    return seq + Text(f"{kind}: {json.dumps(payload)[:300]}")


def print_event(event: dict, output: str) -> None:
    if output == "json":
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()
        return
    _console().print(event_text(event))
