"""The run's repository: cloned before the agent starts, its work pushed after.

Standard library only.

When the spec has `repository: {"url", "base_branch"}`, `clone_repository()`
makes the workspace a checkout of the base branch (git init + fetch, because
the workspace already holds artifacts/, which is excluded from commits).
After the run, `publish_branch()` commits what the agent left uncommitted and,
if HEAD is ahead of the base, pushes exactly one ref:

    git push <url> HEAD:refs/heads/agentloop/<run-code>

No --force, no tags, no other refspec; the run code is checked to be a UUID
before the command is built, so nothing the agent controls reaches the command
line. Repository hooks are disabled for the runner's own commands.

Credentials: GH_TOKEN (from the run's GitHub skill) stays in the environment.
Git asks for it through a credential helper given with `-c` on each command;
the helper script reads `$GH_TOKEN` when git runs it, so the value is never
on a command line, in .git/config or in any event.
"""

from __future__ import annotations

import os
import re
import subprocess
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

BRANCH_PREFIX = "agentloop/"
RUN_CODE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# A conservative subset of git-check-ref-format: what a base branch may be called.
BRANCH_NAME = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._/-]{0,199}$")
URL_SCHEMES = ("https", "file")
GIT_TIMEOUT_SECONDS = 600
CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || exit 0; echo username=x-access-token; '
    'echo "password=$GH_TOKEN"; }; f'
)
COMMIT_MESSAGE = "Changes left uncommitted by agentloop run {code}"


class RepositoryError(Exception):
    """Cloning or pushing failed; the message is safe to show (no secrets)."""


def valid_branch_name(name: str) -> bool:
    return (
        isinstance(name, str)
        and bool(BRANCH_NAME.match(name))
        and ".." not in name
        and "//" not in name
        and not name.endswith((".lock", "/", "."))
        and "/." not in name
        and "@{" not in name
    )


def repository_url_problem(url: str, allow_file: bool = True) -> str | None:
    """Why this URL cannot be cloned by a run, or None when it can."""
    if not isinstance(url, str) or not url.strip():
        return "The repository URL is empty."
    if any(c.isspace() for c in url) or url.startswith("-"):
        return "The repository URL may not contain spaces or start with '-'."
    parsed = urllib.parse.urlsplit(url)
    schemes = URL_SCHEMES if allow_file else ("https",)
    if parsed.scheme not in schemes:
        return f"The repository URL must start with {' or '.join(s + '://' for s in schemes)}."
    if parsed.scheme == "https" and (not parsed.hostname or parsed.username or parsed.password):
        return (
            "The repository URL needs a host and no credentials (the GitHub skill provides them)."
        )
    if parsed.query or parsed.fragment:
        return "The repository URL may not have a query or fragment."
    if parsed.scheme == "file" and not parsed.path.startswith("/"):
        return "A file:// repository URL needs an absolute path."
    return None


def branch_for(run_code: str) -> str:
    """The one branch a run may push; ValueError unless the code is a run UUID."""
    if not isinstance(run_code, str) or not RUN_CODE.match(run_code):
        raise ValueError(f"not a run code: {run_code!r}")
    return BRANCH_PREFIX + run_code


def push_command(url: str, run_code: str) -> list[str]:
    """The push the runner runs: one refspec to agentloop/<run-code>, nothing else."""
    branch = branch_for(run_code)
    problem = repository_url_problem(url)
    if problem:
        raise ValueError(problem)
    return [*_git_prefix(), "push", "--no-follow-tags", url, f"HEAD:refs/heads/{branch}"]


def _git_prefix() -> list[str]:
    # An empty credential.helper first clears any helper the repo or user set.
    return [
        "git",
        "-c",
        "credential.helper=",
        "-c",
        f"credential.helper={CREDENTIAL_HELPER}",
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "advice.detachedHead=false",
    ]


def git_env(env: dict[str, str]) -> dict[str, str]:
    """The environment for the runner's git commands: never prompt, no user config."""
    result = dict(env)
    result.update(
        {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_AUTHOR_NAME": env.get("GIT_AUTHOR_NAME") or "agentloop",
            "GIT_AUTHOR_EMAIL": env.get("GIT_AUTHOR_EMAIL") or "agentloop@localhost",
            "GIT_COMMITTER_NAME": env.get("GIT_COMMITTER_NAME") or "agentloop",
            "GIT_COMMITTER_EMAIL": env.get("GIT_COMMITTER_EMAIL") or "agentloop@localhost",
        }
    )
    return result


def _git(args: list[str], cwd: Path, env: dict[str, str], what: str) -> str:
    try:
        done = subprocess.run(
            [*_git_prefix(), *args],
            cwd=cwd,
            env=git_env(env),
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise RepositoryError(f"{what} failed: {error}") from None
    if done.returncode != 0:
        raise RepositoryError(f"{what} failed: {_redact(done.stderr, env).strip()[-800:]}")
    return done.stdout


def _redact(text: str, env: dict[str, str]) -> str:
    token = env.get("GH_TOKEN") or ""
    return text.replace(token, "[redacted]") if len(token) >= 4 else text


@dataclass
class Checkout:
    url: str
    base_branch: str
    base_sha: str
    path: Path


def clone_repository(repository: dict, workspace: Path, env: dict[str, str]) -> Checkout:
    """Make `workspace` a checkout of repository["base_branch"]; RepositoryError if it cannot."""
    url = repository.get("url") or ""
    base = repository.get("base_branch") or "main"
    problem = repository_url_problem(url)
    if problem:
        raise RepositoryError(problem)
    if not valid_branch_name(base):
        raise RepositoryError(f"Not a branch name: {base!r}.")
    workspace.mkdir(parents=True, exist_ok=True)
    _git(["init", "-q", "-b", base, "."], workspace, env, "git init")
    _git(["remote", "add", "origin", url], workspace, env, "git remote add")
    _git(
        ["fetch", "-q", "--no-tags", "origin", f"+refs/heads/{base}:refs/remotes/origin/{base}"],
        workspace,
        env,
        f"Fetching {base} from {url}",
    )
    _git(
        ["checkout", "-q", "-B", base, f"refs/remotes/origin/{base}"],
        workspace,
        env,
        f"Checking out {base}",
    )
    exclude = workspace / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    with exclude.open("a") as f:
        f.write("\n# agentloop: the run's artifacts are uploaded, not committed\n/artifacts/\n")
    sha = _git(["rev-parse", "HEAD"], workspace, env, "git rev-parse").strip()
    return Checkout(url=url, base_branch=base, base_sha=sha, path=workspace)


def publish_branch(checkout: Checkout, run_code: str, env: dict[str, str]) -> dict | None:
    """Commit leftovers, push agentloop/<run-code> if HEAD is ahead of the base.

    Returns the branch artifact's metadata, or None when the agent changed nothing.
    """
    branch = branch_for(run_code)  # before anything else: a bad code pushes nothing
    cwd = checkout.path
    if _git(["status", "--porcelain", "--untracked-files=all"], cwd, env, "git status").strip():
        _git(["add", "-A"], cwd, env, "git add")
        _git(
            ["commit", "-q", "--no-verify", "-m", COMMIT_MESSAGE.format(code=run_code)],
            cwd,
            env,
            "git commit",
        )
    head = _git(["rev-parse", "HEAD"], cwd, env, "git rev-parse").strip()
    count = int(
        _git(
            ["rev-list", "--count", f"{checkout.base_sha}..{head}"], cwd, env, "git rev-list"
        ).strip()
        or 0
    )
    if count == 0:
        return None
    shortstat = _git(["diff", "--shortstat", checkout.base_sha, head], cwd, env, "git diff")
    stat = _git(["diff", "--stat", checkout.base_sha, head], cwd, env, "git diff")
    log = _git(["log", "--format=%h %s", f"{checkout.base_sha}..{head}"], cwd, env, "git log")
    command = push_command(checkout.url, run_code)
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            env=git_env(env),
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise RepositoryError(f"Pushing {branch} failed: {error}") from None
    if done.returncode != 0:
        reason = _redact(done.stderr, env).strip()[-800:]
        raise RepositoryError(f"Pushing {branch} failed: {reason}")
    return {
        "repo": checkout.url,
        "branch": branch,
        "base": checkout.base_branch,
        "base_sha": checkout.base_sha,
        "head_sha": head,
        "commit_count": count,
        "diffstat": parse_shortstat(shortstat),
        "stat": stat.strip(),
        "log": log.strip(),
    }


def parse_shortstat(text: str) -> dict:
    """' 2 files changed, 3 insertions(+), 1 deletion(-)' -> numbers."""
    numbers = {"files_changed": 0, "insertions": 0, "deletions": 0}
    for part in text.split(","):
        words = part.split()
        if len(words) >= 2 and words[0].isdigit():
            if words[1].startswith("file"):
                numbers["files_changed"] = int(words[0])
            elif words[1].startswith("insertion"):
                numbers["insertions"] = int(words[0])
            elif words[1].startswith("deletion"):
                numbers["deletions"] = int(words[0])
    return numbers


def branch_artifact(metadata: dict) -> tuple[str, str, str]:
    """(key, name, content) of the branch artifact the runner posts."""
    key = f"branch:{metadata['branch']}:{metadata['head_sha']}"
    name = metadata["branch"]
    content = "\n\n".join(part for part in (metadata.get("log"), metadata.get("stat")) if part)
    return key, name, content
