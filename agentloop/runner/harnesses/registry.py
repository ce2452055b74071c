"""Harness names to classes. Imports lazily: a harness's module loads only when it is used."""

from __future__ import annotations

import importlib

from agentloop.runner.harnesses.base import Harness

HARNESSES = {
    "analyst": "agentloop.runner.harnesses.analyst:AnalystHarness",
    "claude-code": "agentloop.runner.harnesses.claude_code:ClaudeCodeHarness",
    "codex": "agentloop.runner.harnesses.codex:CodexHarness",
    "opencode": "agentloop.runner.harnesses.opencode:OpenCodeHarness",
    "gemini": "agentloop.runner.harnesses.gemini:GeminiHarness",
}


class UnknownHarness(LookupError):
    pass


def get_harness(name: str) -> type[Harness]:
    try:
        target = HARNESSES[name]
    except KeyError:
        known = ", ".join(sorted(HARNESSES))
        raise UnknownHarness(f"unknown harness {name!r} (known: {known})") from None
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)
