"""OpenInference attributes as people read them: chat messages, retrieved
documents with scores, a tool's parameters (the span page shows these above
the flat attribute table, which still lists everything).

OpenInference flattens lists into positional keys:
`llm.input_messages.0.message.role`, `retrieval.documents.2.document.score`,
`llm.output_messages.0.message.tool_calls.1.tool_call.function.arguments`.
These functions gather them back by position; they never fail on odd input
(a missing role, a non-numeric position): what they cannot place stays in the
attribute table only.
"""

from __future__ import annotations

import json
import re

_POSITION = re.compile(r"^(\d+)\.(.+)$")


def _items(attributes: dict, prefix: str, inner: str) -> list[dict]:
    """[{rest-of-key: value}] for keys `<prefix>.<n>.<inner>.<rest>`, by n."""
    found: dict[int, dict] = {}
    start = f"{prefix}."
    for key, value in attributes.items():
        if not key.startswith(start):
            continue
        match = _POSITION.match(key[len(start) :])
        if not match:
            continue
        position, rest = int(match.group(1)), match.group(2)
        if rest.startswith(f"{inner}."):
            rest = rest[len(inner) + 1 :]
        found.setdefault(position, {})[rest] = value
    return [found[n] for n in sorted(found)]


def pretty_json(value):
    """A JSON string indented for reading; anything else as it is."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        if isinstance(parsed, dict | list):
            return json.dumps(parsed, indent=2, ensure_ascii=False)
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, indent=2, ensure_ascii=False)
    return value


def messages(attributes: dict, prefix: str) -> list[dict]:
    """The chat messages under `prefix` (llm.input_messages, llm.output_messages)."""
    out = []
    for fields in _items(attributes, prefix, "message"):
        parts = [
            part.get("text")
            for part in _items(fields, "contents", "message_content")
            if part.get("text") is not None
        ]
        content = fields.get("content")
        tool_calls = [
            {
                "id": call.get("id", ""),
                "name": call.get("function.name", ""),
                "arguments": pretty_json(call.get("function.arguments", "")),
            }
            for call in _items(fields, "tool_calls", "tool_call")
        ]
        out.append(
            {
                "role": str(fields.get("role", "")),
                "name": fields.get("name", ""),
                "content": content if content is not None else "\n".join(map(str, parts)),
                "tool_calls": tool_calls,
                "tool_call_id": fields.get("tool_call_id", ""),
            }
        )
    return out


def documents(attributes: dict, prefix: str = "retrieval.documents") -> list[dict]:
    out = []
    for fields in _items(attributes, prefix, "document"):
        score = fields.get("score")
        out.append(
            {
                "id": fields.get("id", ""),
                "content": fields.get("content", ""),
                "score": score if isinstance(score, int | float) else None,
                "metadata": pretty_json(fields.get("metadata", "")),
            }
        )
    return out


def tool(attributes: dict) -> dict | None:
    if not any(key.startswith("tool.") for key in attributes):
        return None
    return {
        "name": attributes.get("tool.name", ""),
        "description": attributes.get("tool.description", ""),
        "parameters": pretty_json(attributes.get("tool.parameters", "")),
    }


def span_views(attributes: dict) -> dict:
    """What the span page shows above its attribute table."""
    attributes = attributes if isinstance(attributes, dict) else {}
    return {
        "input_messages": messages(attributes, "llm.input_messages"),
        "output_messages": messages(attributes, "llm.output_messages"),
        "documents": documents(attributes),
        "reranked_documents": documents(attributes, "reranker.output_documents"),
        "tool": tool(attributes),
        "tools": [
            {"schema": pretty_json(t.get("json_schema", ""))}
            for t in _items(attributes, "llm.tools", "tool")
        ],
    }
