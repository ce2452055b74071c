"""From preset to pull request through the real server: a session from a preset with a
repository and a GitHub skill, the runner (in this process, against the live server)
cloning and pushing, the branch artifact stored, a reviewer approving it, and a draft
pull request opened on the GitHub double. The token never lands in anything stored.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agentloop.presets.actions import start_session_from_preset
from agentloop.presets.models import AgentPreset
from agentloop.review.actions import approve_branch
from agentloop.runner.client import RunnerClient
from agentloop.runner.events import EventQueue
from agentloop.runner.harnesses.base import Harness, TurnResult
from agentloop.runner.loop import Runner
from agentloop.runs.models import Artifact, ArtifactKind, Run, RunStatus
from tests.github_double import GitHubDouble
from tests.test_presets_pages import make_skill
from tests.test_repo_branch import git, refs

pytest_plugins = ["tests.fake_sandbox", "tests.gateway_server"]  # fake_provider; asgi_server


class FixingHarness(Harness):
    """The agent: edits a file in the checkout and commits it."""

    name = "fixer"
    interactive = False

    def run_turn(self, prompt: str) -> TurnResult:
        (self.workspace / "app.py").write_text("print('hello, world')\n")
        git("commit", "-q", "-am", "Greet the world", cwd=self.workspace)
        return TurnResult(ok=True)


@pytest.fixture
def origin(tmp_path) -> Path:
    bare = tmp_path / "acme" / "shop.git"
    bare.parent.mkdir()
    git("init", "-q", "--bare", "-b", "main", str(bare))
    seed = tmp_path / "seed"
    git("clone", "-q", str(bare), str(seed))
    (seed / "app.py").write_text("print('hi')\n")
    git("add", ".", cwd=seed)
    git("commit", "-q", "-m", "first", cwd=seed)
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=seed)
    return bare


def test_a_preset_with_a_repository_ends_in_a_draft_pull_request(
    asgi_server, served_db, settings, fake_provider, tmp_path, origin, space, project, alice, bob
):
    settings.AGENTLOOP_PUBLIC_URL = asgi_server
    settings.AGENTLOOP_ALLOW_FILE_REPOSITORIES = True
    gh = make_skill(space)
    token = gh.secrets()["token"]
    preset = AgentPreset.objects.create(
        space=space,
        name="Fixer",
        harness="claude-code",
        sandbox="fake",
        repository_url=origin.as_uri(),
        base_branch="main",
        created_by=alice,
    )
    preset.skills.set([gh])

    # Q_CLUSTER sync: the launch runs at commit, in this process, on the fake provider.
    run = start_session_from_preset(bob, project, preset.pk, "Fix it")
    run.refresh_from_db()
    assert run.status == RunStatus.PROVISIONING, run.exit_reason
    sandbox_env = fake_provider.started[0].env

    workspace = tmp_path / "work"
    client = RunnerClient(
        asgi_server,
        sandbox_env["AGENTLOOP_RUN_TOKEN"],
        sleep=lambda s: None,
        log=lambda m: None,
    )
    runner = Runner(
        client,
        {**sandbox_env, "HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"},
        workspace,
        harness_factory=lambda name: FixingHarness,
        events=EventQueue(client, instance_id="e2e", max_delay=0.01, log=lambda m: None),
        heartbeat_interval=60,
        inbox_wait=1,
        log=lambda m: None,
    )
    assert runner.run() == 0

    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.exit_reason
    branch_name = f"agentloop/{run.code}"
    assert f"refs/heads/{branch_name}" in refs(origin)
    branch = Artifact.objects.get(run=run, kind=ArtifactKind.BRANCH)
    assert branch.metadata["branch"] == branch_name
    assert branch.metadata["commit_count"] == 1

    with GitHubDouble(token=token, repos={"acme/shop": origin}) as github:
        settings.AGENTLOOP_GITHUB_API_URL = github.url
        pull_request = approve_branch(alice, branch, "Ship it.")

    assert pull_request.url == "https://github.com/acme/shop/pull/1"
    assert github.requests[0]["body"]["head"] == branch_name
    assert github.requests[0]["body"]["draft"] is True

    stored = [str(e.payload) for e in run.events.all()]
    stored += [a.content + str(a.metadata) + a.url for a in run.artifacts.all()]
    stored.append(str(Run.objects.get(pk=run.pk).config))
    assert not any(token in text for text in stored)
    for path in (workspace / ".git").rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes()
