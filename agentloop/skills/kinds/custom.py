"""Custom: a Claude Code skill from a git repository, with optional env secrets.

The runner clones `repo_url` at `ref` into `$HOME/.claude/skills/<name>/` in the
sandbox (agentloop/runner/skills.py). Env secrets are stored as secret fields
named `env.<NAME>`, so they are encrypted, write-only and redacted like any other.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from agentloop.skills.kinds.base import Field, SkillKind

ENV_PREFIX = "env."
# A git ref we hand to `git clone --branch` / `git fetch`: no option-looking
# values, no whitespace or the characters git itself forbids in ref names.
REF = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/-]{1,200}(?<![./])$")
SCP_URL = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[A-Za-z0-9._/~-]+$")
URL_SCHEMES = ("https", "http", "ssh", "git", "file")


def valid_repo_url(url: str) -> bool:
    if url.startswith("-") or any(c.isspace() for c in url):
        return False
    if SCP_URL.match(url):
        return True
    parts = urlsplit(url)
    if parts.scheme not in URL_SCHEMES:
        return False
    return bool(parts.path.strip("/")) and (parts.scheme == "file" or bool(parts.netloc))


def has_credentials(url: str) -> bool:
    """https://user:token@host/… — ssh://git@host/… names a user, not a secret."""
    parts = urlsplit(url)
    return "@" in parts.netloc and parts.scheme not in ("ssh", "")


class Custom(SkillKind):
    def clean(self, config, secrets):
        errors: dict[str, str] = {}
        url = config.get("repo_url", "")
        if has_credentials(url):
            # The URL is not secret (pages, runner logs): credentials belong in env secrets.
            errors["repo_url"] = (
                "Leave credentials out of the URL; put a token in an environment secret."
            )
        elif not valid_repo_url(url):
            errors["repo_url"] = (
                "The repository is a git URL: https://host/owner/repo.git, "
                "git@host:owner/repo.git, ssh://…, or file:///path."
            )
        if not REF.match(config.get("ref", "")):
            errors["ref"] = "The ref is a branch, tag or commit name such as main or v1.2."
        return errors

    def env(self, config, secrets):
        return {
            name[len(ENV_PREFIX) :]: value
            for name, value in secrets.items()
            if name.startswith(ENV_PREFIX)
        }

    def install(self, config, name):
        return {"name": name, "repo_url": config["repo_url"], "ref": config["ref"]}


KIND = Custom(
    key="custom",
    label="Custom",
    description=(
        "A Claude Code skill from a git repository, cloned into the sandbox and installed "
        "under ~/.claude/skills/<name>/, with optional environment secrets."
    ),
    fields=(
        Field("repo_url", "Git repository URL", max_length=1000),
        Field("ref", "Ref", default="main", max_length=200, help="Branch, tag or commit."),
    ),
    has_env_secrets=True,
)
