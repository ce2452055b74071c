"""Contexts: which server, with which token.

Where they come from, first found wins:
1. `AGENTLOOP_URL` and `AGENTLOOP_TOKEN` (or `AGENTLOOP_TOKEN_FILE`) in the environment;
2. the contexts file (`AGENTLOOP_CONFIG`, else `~/.config/agentloop/contexts.toml`):
   the context named by `--context` or `AGENTLOOP_CONTEXT`, else its `current`.

    current = "prod"
    [contexts.prod]
    url = "https://agentloop.example.com"
    token_file = "~/.config/agentloop/prod.token"   # or: token = "al_pt_…"

A token is never an argument: argv shows in `ps`, shell history and CI logs.
`agentloop context add` reads it from stdin or the environment and writes the
file readable by its owner only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple


class ConfigError(Exception):
    """The message says what to set."""


class Context(NamedTuple):
    # A NamedTuple, not a dataclass: `dataclasses` pulls in `inspect`, which is
    # a few milliseconds of every command's start-up for nothing.
    name: str
    url: str
    token: str


def config_path() -> Path:
    explicit = os.environ.get("AGENTLOOP_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "agentloop" / "contexts.toml"


def load_file(path: Path | None = None) -> dict:
    path = path or config_path()
    if not path.exists():
        return {"contexts": {}}
    import tomllib  # only when there is a file: the environment alone needs no parser

    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"Cannot read {path}: {error}") from None
    data.setdefault("contexts", {})
    return data


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def save_file(data: dict, path: Path | None = None) -> Path:
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    if data.get("current"):
        lines.append(f"current = {_quote(data['current'])}")
    for name, entry in sorted(data.get("contexts", {}).items()):
        lines.append("")
        lines.append(f"[contexts.{_quote(name)}]")
        for key in ("url", "token", "token_file"):
            if entry.get(key):
                lines.append(f"{key} = {_quote(entry[key])}")
    # Written readable by its owner only: it may hold a token.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    os.chmod(path, 0o600)
    return path


def _token_from_file(name: str) -> str:
    path = Path(name).expanduser()
    try:
        return path.read_text().strip()
    except OSError as error:
        raise ConfigError(f"Cannot read the token file {path}: {error.strerror}.") from None


def resolve(context_name: str | None = None) -> Context:
    env_url = os.environ.get("AGENTLOOP_URL")
    env_token = os.environ.get("AGENTLOOP_TOKEN")
    if not env_token and os.environ.get("AGENTLOOP_TOKEN_FILE"):
        env_token = _token_from_file(os.environ["AGENTLOOP_TOKEN_FILE"])
    wanted = context_name or os.environ.get("AGENTLOOP_CONTEXT")
    if env_url and env_token and not context_name:
        return Context("environment", env_url.rstrip("/"), env_token)
    data = load_file()
    name = wanted or data.get("current")
    if not name:
        raise ConfigError(
            "No server configured. Set AGENTLOOP_URL and AGENTLOOP_TOKEN, or add a context: "
            "`agentloop context add NAME --url URL` (the token is read from stdin)."
        )
    entry = data["contexts"].get(name)
    if entry is None:
        known = ", ".join(sorted(data["contexts"])) or "none"
        raise ConfigError(f"No context named {name!r} in {config_path()} (known: {known}).")
    token = env_token or entry.get("token") or ""
    if not token and entry.get("token_file"):
        token = _token_from_file(entry["token_file"])
    url = env_url or entry.get("url") or ""
    if not url or not token:
        raise ConfigError(f"The context {name!r} needs a url and a token (or token_file).")
    return Context(name, url.rstrip("/"), token)
