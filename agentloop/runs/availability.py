"""Which harnesses this deployment can run now, and if not, why and how to fix it.

A harness needs its CLI (where the sandboxes get it from) and, when it calls a
model, the real key of its provider in the web process (the gateway's
setting). Forms offer an unavailable harness disabled, with the reason, and
starting a session with one is refused with the same words, instead of a run
that fails later with the gateway's 503.

Where the CLI is checked: the local sandbox provider takes Claude Code from
the claude-agent-sdk package (or SANDBOX_CLAUDE_BINARY) and the other CLIs
from settings.HARNESS_CLI_DIR (`make harness-cli`). A Kubernetes deployment's
runner image carries its own CLIs, so only the key is checked there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from agentloop.runs.protocol import HARNESS_PROVIDERS, HARNESSES
from agentloop.sandboxes.local import claude_binary

LABELS = {
    "analyst": "Analyst (built in, no model)",
    "claude-code": "Claude Code",
    "codex": "Codex",
    "opencode": "OpenCode",
    "gemini": "Gemini CLI",
}
KEY_SETTINGS = {
    "anthropic": "AGENTLOOP_ANTHROPIC_API_KEY",
    "openai": "AGENTLOOP_OPENAI_API_KEY",
    "gemini": "AGENTLOOP_GEMINI_API_KEY",
}
PROVIDER_LABELS = {"anthropic": "Anthropic", "openai": "OpenAI", "gemini": "Gemini"}
NPM_CLIS = {"codex": "codex", "opencode": "opencode", "gemini": "gemini"}


@dataclass(frozen=True)
class Availability:
    harness: str
    available: bool
    reason: str = ""  # what is missing and how to configure it

    @property
    def label(self) -> str:
        name = LABELS.get(self.harness, self.harness)
        return name if self.available else f"{name} — unavailable: {self.reason}"


def _cli_problem(harness: str) -> str:
    if getattr(settings, "SANDBOX_PROVIDER_DEFAULT", "local") != "local":
        return ""
    if harness == "claude-code":
        found = claude_binary()
        if found is None or not Path(found).exists():
            return (
                "the Claude Code CLI is not installed (install the claude-agent-sdk package "
                "or set AGENTLOOP_SANDBOX_CLAUDE_BINARY)"
            )
    elif harness in NPM_CLIS:
        cli_dir = Path(settings.HARNESS_CLI_DIR)
        if not (cli_dir / "node_modules" / ".bin" / NPM_CLIS[harness]).exists():
            cli = NPM_CLIS[harness]
            return f"the {cli} CLI is not installed (run `make harness-cli`, into {cli_dir})"
    return ""


def provider_problem(provider: str) -> str:
    setting = KEY_SETTINGS.get(provider)
    if setting and not getattr(settings, setting, ""):
        return f"no {PROVIDER_LABELS[provider]} key (set {setting} on the web process)"
    return ""


def availability(harness: str, provider: str = "") -> Availability:
    """Whether `harness` (calling `provider`, blank: its first) can run on this deployment."""
    if harness not in HARNESSES:
        return Availability(harness, False, f"unknown harness {harness!r}")
    problems = [_cli_problem(harness)]
    speaks = HARNESS_PROVIDERS.get(harness, ())
    if speaks:
        problems.append(provider_problem(provider or speaks[0]))
    problems = [p for p in problems if p]
    return Availability(harness, not problems, "; ".join(problems))


def harness_choices() -> list[tuple[str, str]]:
    return [(name, availability(name).label) for name in HARNESSES]


def unavailable(harness: str, provider: str = "") -> str:
    """The reason `harness` cannot run now, or "" when it can."""
    found = availability(harness, provider)
    return (
        "" if found.available else f"{LABELS.get(harness, harness)} is unavailable: {found.reason}."
    )
