"""What the CLI prints: tables (rich) or JSON, and a transcript line per event."""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.table import Table
from rich.text import Text

console = Console(highlight=False, soft_wrap=True)
errors = Console(stderr=True, highlight=False)


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


def emit(data, output: str, columns: list[str] | None = None) -> None:
    """Rows (a list of dicts) or one object, as a table or as JSON."""
    if output == "json":
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        return
    if isinstance(data, dict):
        table = Table(show_header=False, box=None, pad_edge=False)
        table.add_column(style="bold")
        table.add_column()
        for key in columns or list(data):
            table.add_row(key, _cell(pick(data, key)))
        console.print(table)
        return
    if not data:
        console.print("(none)")
        return
    columns = columns or list(data[0])
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in data:
        table.add_row(*(_cell(pick(row, c)) for c in columns))
    console.print(table)


def event_text(event: dict) -> Text:
    """One transcript line, as the session page shows the event."""
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
    console.print(event_text(event))
