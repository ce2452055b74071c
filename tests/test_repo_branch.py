"""The runner's repository: clone at the base branch, push agentloop/<run-code>, report a branch.

Against a local bare repository made in each test (file:// URL) and the
in-process runner double: no network, no Django.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from agentloop.runner.harnesses.base import Harness, TurnResult
from agentloop.runner.repo import (
    CREDENTIAL_HELPER,
    branch_for,
    git_env,
    push_command,
    repository_url_problem,
    valid_branch_name,
)
from tests.runner_double import RunnerDouble
from tests.test_runner_loop import make_runner

CANARY = "ghp_canary0123456789abcdefSECRET"


def git(*args, cwd=None) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        env=git_env({"PATH": "/usr/bin:/bin"}),
    )
    return done.stdout.strip()


@pytest.fixture
def origin(tmp_path) -> Path:
    """A bare repository with main (two files) and a second branch, served as file://."""
    bare = tmp_path / "origin.git"
    git("init", "-q", "--bare", "-b", "main", str(bare))
    seed = tmp_path / "seed"
    git("clone", "-q", str(bare), str(seed))
    (seed / "README.md").write_text("# shop assistant\n")
    (seed / "app.py").write_text("print('hello')\n")
    git("add", ".", cwd=seed)
    git("commit", "-q", "-m", "first", cwd=seed)
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=seed)
    git("checkout", "-q", "-b", "develop", cwd=seed)
    (seed / "dev.txt").write_text("only on develop\n")
    git("add", ".", cwd=seed)
    git("commit", "-q", "-m", "develop work", cwd=seed)
    git("push", "-q", "origin", "HEAD:refs/heads/develop", cwd=seed)
    return bare


def refs(bare: Path) -> dict[str, str]:
    out = git("for-each-ref", "--format=%(refname) %(objectname)", cwd=bare)
    return dict(line.split(" ", 1) for line in out.splitlines())


def harness_doing(work):
    """A one-turn harness that runs work(workspace) as the agent."""

    class WorkingHarness(Harness):
        name = "worker"
        interactive = False

        def run_turn(self, prompt: str) -> TurnResult:
            work(self.workspace, self.env)
            return TurnResult(ok=True)

    return WorkingHarness


def run_with_repository(tmp_path, origin, work, *, base="main", code=None, url=None):
    code = code or str(uuid.uuid4())
    spec = {
        "run": code,
        "harness": "worker",
        "env": {"GH_TOKEN": CANARY},
        "repository": {"url": url or origin.as_uri(), "base_branch": base},
    }
    with RunnerDouble(spec=spec) as double:
        runner = make_runner(double, tmp_path, harness_class=harness_doing(work))
        exit_code = runner.run()
    return code, double, exit_code


def statuses(double) -> list[str]:
    return [s["state"] for s in double.statuses]


def commit_and_leave_changes(workspace: Path, env: dict) -> None:
    # The agent sees the checkout of the base branch in its working directory.
    assert (workspace / "README.md").read_text() == "# shop assistant\n"
    assert env["GH_TOKEN"] == CANARY
    (workspace / "app.py").write_text("print('hello, world')\n")
    git("commit", "-q", "-am", "Greet the world", cwd=workspace)
    (workspace / "notes.md").write_text("left uncommitted\n")
    (workspace / "artifacts" / "investigation.md").write_text("# Findings\n")


def test_it_pushes_the_agents_commits_and_leftovers_as_the_run_branch(tmp_path, origin):
    before = refs(origin)

    code, double, exit_code = run_with_repository(tmp_path, origin, commit_and_leave_changes)

    assert exit_code == 0
    assert statuses(double) == ["running", "succeeded"]
    after = refs(origin)
    branch_ref = f"refs/heads/agentloop/{code}"
    # Exactly one new ref; main and develop untouched.
    assert set(after) - set(before) == {branch_ref}
    assert {k: after[k] for k in before} == before
    files = git("ls-tree", "-r", "--name-only", branch_ref, cwd=origin).splitlines()
    assert sorted(files) == ["README.md", "app.py", "notes.md"]  # artifacts/ not committed
    assert git("show", f"{branch_ref}:app.py", cwd=origin) == "print('hello, world')"
    assert git("rev-list", "--count", f"main..{branch_ref}", cwd=origin) == "2"

    (branch,) = [a for a in double.artifacts.values() if a["kind"] == "branch"]
    meta = branch["metadata"]
    assert branch["name"] == f"agentloop/{code}"
    assert meta["repo"] == origin.as_uri()
    assert meta["branch"] == f"agentloop/{code}"
    assert meta["base"] == "main"
    assert meta["head_sha"] == after[branch_ref]
    assert meta["base_sha"] == before["refs/heads/main"]
    assert meta["commit_count"] == 2
    assert meta["diffstat"] == {"files_changed": 2, "insertions": 2, "deletions": 1}
    assert "Greet the world" in branch["content"]
    artifact_events = [e["payload"] for e in double.events if e["kind"] == "artifact"]
    assert [(p["kind"], p["name"]) for p in artifact_events if p["kind"] == "branch"] == [
        ("branch", f"agentloop/{code}")
    ]


def test_the_token_never_lands_in_the_repository_config_or_the_events(tmp_path, origin):
    code, double, _ = run_with_repository(tmp_path, origin, commit_and_leave_changes)

    workspace = tmp_path / "work"
    for path in (workspace / ".git").rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path
    assert CANARY not in str(double.events)
    assert CANARY not in str(double.artifacts)


def test_it_clones_the_base_branch_it_is_given(tmp_path, origin):
    seen = {}

    def look(workspace, env):
        seen["dev"] = (workspace / "dev.txt").read_text()
        seen["branch"] = git("rev-parse", "--abbrev-ref", "HEAD", cwd=workspace)

    run_with_repository(tmp_path, origin, look, base="develop")

    assert seen == {"dev": "only on develop\n", "branch": "develop"}


def test_a_run_that_changes_nothing_pushes_nothing(tmp_path, origin):
    before = refs(origin)

    code, double, exit_code = run_with_repository(
        tmp_path, origin, lambda ws, env: (ws / "artifacts" / "investigation.md").write_text("x")
    )

    assert exit_code == 0
    assert refs(origin) == before
    assert [a for a in double.artifacts.values() if a["kind"] == "branch"] == []


def test_tags_and_other_branches_the_agent_made_are_not_pushed(tmp_path, origin):
    def sneaky(workspace, env):
        (workspace / "app.py").write_text("changed\n")
        git("commit", "-q", "-am", "change", cwd=workspace)
        git("tag", "v9.9.9", cwd=workspace)
        git("branch", "release", cwd=workspace)
        # Even a repository configured to push tags along does not.
        git("config", "push.followTags", "true", cwd=workspace)
        git("tag", "-a", "-m", "annotated", "v10", cwd=workspace)

    code, double, _ = run_with_repository(tmp_path, origin, sneaky)

    assert sorted(refs(origin)) == sorted(
        ["refs/heads/main", "refs/heads/develop", f"refs/heads/agentloop/{code}"]
    )


def test_a_repository_that_cannot_be_cloned_fails_the_run_before_the_agent_starts(tmp_path, origin):
    ran = []

    code, double, exit_code = run_with_repository(
        tmp_path, origin, lambda ws, env: ran.append(1), base="no-such-branch"
    )

    assert ran == []
    assert statuses(double) == ["running", "failed"]
    assert "no-such-branch" in double.statuses[-1]["exit_reason"]
    assert any(e["kind"] == "error" for e in double.events)


def test_a_run_whose_code_is_not_a_uuid_pushes_nothing(tmp_path, origin):
    before = refs(origin)

    _, double, _ = run_with_repository(
        tmp_path, origin, commit_and_leave_changes, code="x --force; main"
    )

    assert refs(origin) == before
    errors = [e["payload"]["message"] for e in double.events if e["kind"] == "error"]
    assert any("not a run code" in m for m in errors)


# -- the command and the validators --


def test_the_push_command_has_one_refspec_and_no_force():
    code = "0b7f9c2e-1d2a-4c5b-9e8f-0123456789ab"

    command = push_command("https://github.com/acme/shop.git", code)

    push_at = command.index("push")
    assert command[push_at:] == [
        "push",
        "--no-follow-tags",
        "https://github.com/acme/shop.git",
        f"HEAD:refs/heads/agentloop/{code}",
    ]
    assert not any("force" in part or part.startswith("+") for part in command)


@pytest.mark.parametrize(
    "code",
    [
        "",
        "main",
        "0B7F9C2E-1D2A-4C5B-9E8F-0123456789AB",
        "0b7f9c2e-1d2a-4c5b-9e8f-0123456789ab:x",
        "--force",
        "../../main",
    ],
)
def test_branch_names_come_only_from_run_codes(code):
    with pytest.raises(ValueError):
        branch_for(code)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "-uhttps://x",
        "ext::sh -c touch% /tmp/pwned",
        "ssh://github.com/a/b",
        "https://user:pw@github.com/a/b",
        "https:///nohost",
        "git@github.com:a/b.git",
        "https://github.com/a/b?x=1",
    ],
)
def test_repository_urls_other_than_https_and_file_are_refused(url):
    assert repository_url_problem(url) is not None


def test_file_urls_can_be_refused():
    assert repository_url_problem("file:///srv/repo.git") is None
    assert "https://" in repository_url_problem("file:///srv/repo.git", allow_file=False)


@pytest.mark.parametrize("name", ["main", "develop", "release/2026.11", "feature_x-1"])
def test_ordinary_branch_names_are_valid(name):
    assert valid_branch_name(name)


@pytest.mark.parametrize(
    "name", ["", "-main", "a..b", "a//b", "x.lock", "a/", "a@{1}", "has space", "a/.hidden"]
)
def test_odd_branch_names_are_not(name):
    assert not valid_branch_name(name)


def test_the_credential_helper_reads_the_token_from_the_environment(tmp_path):
    # What git does when a https remote asks for a password, without the network.
    done = subprocess.run(
        [
            "git",
            "-c",
            "credential.helper=",
            "-c",
            f"credential.helper={CREDENTIAL_HELPER}",
            "credential",
            "fill",
        ],
        input="protocol=https\nhost=github.com\n\n",
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env=git_env({"PATH": "/usr/bin:/bin", "GH_TOKEN": CANARY}),
    )

    assert f"password={CANARY}" in done.stdout.splitlines()
    assert "username=x-access-token" in done.stdout.splitlines()
    assert CANARY not in CREDENTIAL_HELPER
