"""Install the run's custom skills in the sandbox. Standard library only.

Each custom skill is a git repository (URL and ref) cloned into
`$HOME/.claude/skills/<name>/`, where Claude Code finds skills. The server
validated names, URLs and refs; they are checked again here because this code
runs commands with them. A skill that cannot be installed is reported and
skipped: the run goes on without it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

NAME = re.compile(r"^[A-Za-z0-9 ._-]{1,253}$")
CLONE_TIMEOUT_SECONDS = 120


def _problem(skill: dict) -> str | None:
    name, url, ref = skill.get("name", ""), skill.get("repo_url", ""), skill.get("ref", "")
    if (
        not isinstance(name, str)
        or not NAME.match(name)
        or set(name) <= {"."}
        or name != name.strip()
    ):
        return f"skill name {name!r} is not allowed"
    if not isinstance(url, str) or not url or url.startswith("-") or any(c.isspace() for c in url):
        return f"skill {name}: repository URL is not allowed"
    if not isinstance(ref, str) or not ref or ref.startswith("-") or any(c.isspace() for c in ref):
        return f"skill {name}: ref is not allowed"
    return None


def _git(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLONE_TIMEOUT_SECONDS,
        check=False,
    )


def _first_error(output: str) -> str:
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("fatal:", "error:")):
            return line
    return lines[-1] if lines else "no output"


def install_skill(home: Path, skill: dict, env: dict[str, str]) -> str | None:
    """Clone one skill; None when installed, else what went wrong (no secrets in it)."""
    problem = _problem(skill)
    if problem:
        return problem
    root = home / ".claude" / "skills"
    target = root / skill["name"]
    if target.resolve().parent != root.resolve():
        return f"skill name {skill['name']!r} is not allowed"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as scratch:
        git_env = {**env, "GIT_TERMINAL_PROMPT": "0", "HOME": str(home)}
        if skill["repo_url"].startswith("file://"):
            # A mirror bound into the sandbox is owned by a uid the sandbox does
            # not map: git refuses it ("dubious ownership") unless a global config
            # trusts it. A throwaway one trusts that path only, for this fetch.
            config = Path(scratch) / "gitconfig"
            config.write_text(f"[safe]\n\tdirectory = {urlsplit(skill['repo_url']).path}\n")
            git_env["GIT_CONFIG_GLOBAL"] = str(config)
        return _fetch(skill, target, git_env)


def _fetch(skill: dict, target: Path, git_env: dict[str, str]) -> str | None:
    fetch = ["fetch", "--quiet", "--depth", "1", skill["repo_url"], skill["ref"]]
    steps = (
        ("init", ["init", "--quiet"]),
        ("fetch", fetch),
        (
            "checkout",
            ["-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", "FETCH_HEAD"],
        ),
    )
    for step, args in steps:
        try:
            done = _git(args, target, git_env)
        except (OSError, subprocess.TimeoutExpired) as error:
            shutil.rmtree(target, ignore_errors=True)
            return f"skill {skill['name']}: git {step} failed: {error}"
        if done.returncode != 0:
            shutil.rmtree(target, ignore_errors=True)
            detail = _first_error(done.stderr or done.stdout)
            return f"skill {skill['name']}: git {step} failed: {detail}"
    # The checkout is what Claude Code reads; the history is not needed.
    shutil.rmtree(target / ".git", ignore_errors=True)
    return None


def _stderr(message: str) -> None:
    print(f"agentloop-runner: {message}", file=sys.stderr, flush=True)


def install_skills(home: Path, skills: list, env: dict[str, str], log=_stderr) -> list[str]:
    """Install every custom skill of the spec; returns the problems (also logged)."""
    problems = []
    for skill in skills or []:
        problem = install_skill(home, skill if isinstance(skill, dict) else {}, env)
        if problem:
            problems.append(problem)
            if log is not None:
                log(problem)
    return problems
