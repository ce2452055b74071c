"""Approving a run's branch opens a draft pull request; rejecting it does not.

Against tests/github_double.py, which checks the head branch against a real
bare repository made here. The last test talks to real GitHub and is skipped
unless AGENTLOOP_GITHUB_TEST_TOKEN and AGENTLOOP_GITHUB_TEST_REPO are set.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import Http404

from agentloop.review import github
from agentloop.review.actions import ReviewError, approve_branch, reject
from agentloop.runner.repo import git_env
from agentloop.runs.models import Artifact, ArtifactKind, ReviewState, Run, RunEvent
from tests.github_double import GitHubDouble

TOKEN = "ghp_" + "T" * 36


def git(*args, cwd=None) -> str:
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        env=git_env({"PATH": "/usr/bin:/bin"}),
    ).stdout.strip()


@pytest.fixture
def origin(tmp_path):
    """acme/shop.git with main, as a bare repository."""
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


def push_run_branch(origin, run) -> str:
    work = origin.parent.parent / f"work-{run.code}"
    git("clone", "-q", str(origin), str(work))
    (work / "app.py").write_text("print('hello')\n")
    git("commit", "-q", "-am", "Say hello", cwd=work)
    git("push", "-q", "origin", f"HEAD:refs/heads/agentloop/{run.code}", cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


@pytest.fixture
def run(project, alice, origin):
    run = Run(
        space=project.space,
        project=project,
        prompt="Fix the greeting\nIt should say hello.",
        creator=alice,
        status="succeeded",
        config={
            "harness": "claude-code",
            "repository": {"url": origin.as_uri(), "base_branch": "main"},
            "preset_name": "Fixer",
        },
    )
    run.set_secret_env({"GH_TOKEN": TOKEN})
    run.save()
    return run


@pytest.fixture
def branch(run, origin):
    head = push_run_branch(origin, run)
    return Artifact.objects.create(
        run=run,
        key=f"branch:agentloop/{run.code}:{head}",
        kind=ArtifactKind.BRANCH,
        name=f"agentloop/{run.code}",
        metadata={
            "repo": origin.as_uri(),
            "branch": f"agentloop/{run.code}",
            "base": "main",
            "head_sha": head,
            "commit_count": 1,
            "diffstat": {"files_changed": 1, "insertions": 1, "deletions": 1},
        },
    )


@pytest.fixture
def github_double(origin, settings):
    with GitHubDouble(token=TOKEN, repos={"acme/shop": origin}) as double:
        settings.AGENTLOOP_GITHUB_API_URL = double.url
        yield double


def pull_requests(run):
    return list(run.artifacts.filter(kind=ArtifactKind.PULL_REQUEST))


# -- approving --


def test_approving_the_branch_opens_a_draft_pull_request(run, branch, bob, github_double):
    pull_request = approve_branch(bob, branch, "Looks right.")

    (request,) = github_double.requests
    assert request["path"] == "/repos/acme/shop/pulls"
    assert request["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert request["body"]["draft"] is True
    assert request["body"]["head"] == f"agentloop/{run.code}"
    assert request["body"]["base"] == "main"
    assert request["body"]["title"] == "agentloop: Fix the greeting"
    assert "Looks right." in request["body"]["body"]
    assert f"/swarms/runs/{run.code}/" in request["body"]["body"]

    assert pull_requests(run) == [pull_request]
    assert pull_request.url == "https://github.com/acme/shop/pull/1"
    assert pull_request.metadata["number"] == 1
    assert pull_request.metadata["draft"] is True
    assert pull_request.metadata["branch_artifact_id"] == branch.pk
    branch.refresh_from_db()
    assert (branch.review_state, branch.reviewer, branch.review_comment) == (
        ReviewState.APPROVED,
        bob,
        "Looks right.",
    )
    event = RunEvent.objects.filter(run=run, kind="artifact").last()
    assert event.payload["kind"] == "pull_request"
    assert event.payload["url"] == "https://github.com/acme/shop/pull/1"
    assert TOKEN not in str(pull_request.content) + str(pull_request.metadata)


def test_a_branch_that_was_never_pushed_gets_githubs_answer_and_stays_pending(
    run, origin, bob, github_double
):
    unpushed = Artifact.objects.create(
        run=run,
        key="b",
        kind=ArtifactKind.BRANCH,
        name="x",
        metadata={"branch": f"agentloop/{run.code}"},
    )

    with pytest.raises(ReviewError) as caught:
        approve_branch(bob, unpushed)

    assert "422" in caught.value.messages[0]
    assert "head invalid" in caught.value.messages[0]
    unpushed.refresh_from_db()
    assert unpushed.review_state == ReviewState.PENDING
    assert unpushed.reviewer is None
    assert pull_requests(run) == []


def test_a_token_github_refuses_leaves_the_branch_pending(run, branch, bob, github_double):
    github_double.token = "ghp_" + "R" * 36  # rotated on GitHub since the run started

    with pytest.raises(ReviewError, match="Bad credentials"):
        approve_branch(bob, branch)

    branch.refresh_from_db()
    assert branch.review_state == ReviewState.PENDING
    assert pull_requests(run) == []


def test_a_branch_is_approved_once(run, branch, alice, bob, github_double):
    approve_branch(bob, branch)

    with pytest.raises(ReviewError, match="already approved"):
        approve_branch(alice, Artifact.objects.get(pk=branch.pk))

    assert len(github_double.requests) == 1
    assert len(pull_requests(run)) == 1


def test_a_rejected_branch_cannot_be_approved(run, branch, bob, github_double):
    reject(bob, branch, "Wrong approach.")

    with pytest.raises(ReviewError, match="already rejected"):
        approve_branch(bob, Artifact.objects.get(pk=branch.pk))

    assert github_double.requests == []


def test_the_branch_name_comes_from_the_run_not_the_artifact(run, branch, bob, github_double):
    # The runner (so the agent) wrote the metadata: it may not point the PR at main.
    branch.metadata = {**branch.metadata, "branch": "main"}
    branch.save()

    with pytest.raises(ReviewError, match="does not name the run's branch"):
        approve_branch(bob, branch)

    assert github_double.requests == []
    assert Artifact.objects.get(pk=branch.pk).review_state == ReviewState.PENDING


def test_only_branches_open_pull_requests(run, bob, github_double):
    investigation = Artifact.objects.create(run=run, key="i", kind="investigation", name="i.md")

    with pytest.raises(ReviewError, match="Only a branch"):
        approve_branch(bob, investigation)

    assert github_double.requests == []


def test_a_run_without_a_github_token_says_so(run, branch, bob, github_double):
    run.set_secret_env({})
    run.save()

    with pytest.raises(ReviewError, match="no GitHub token"):
        approve_branch(bob, Artifact.objects.get(pk=branch.pk))

    assert github_double.requests == []


# -- who may review --


@pytest.mark.parametrize(
    "role,raises",
    [
        ("owner", None),
        ("member", None),
        ("viewer", PermissionDenied),
        ("outsider", Http404),
        ("anonymous", Http404),
    ],
)
def test_approve_permissions(run, branch, users, github_double, role, raises):
    user = AnonymousUser() if role == "anonymous" else users[role]

    if raises:
        with pytest.raises(raises):
            approve_branch(user, branch)
    else:
        approve_branch(user, branch)

    branch.refresh_from_db()
    assert (branch.review_state == ReviewState.APPROVED) is (raises is None)
    assert len(pull_requests(run)) == (0 if raises else 1)
    assert len(github_double.requests) == (0 if raises else 1)


@pytest.mark.parametrize(
    "role,raises",
    [
        ("owner", None),
        ("member", None),
        ("viewer", PermissionDenied),
        ("outsider", Http404),
        ("anonymous", Http404),
    ],
)
def test_reject_permissions(run, branch, users, github_double, role, raises):
    user = AnonymousUser() if role == "anonymous" else users[role]

    if raises:
        with pytest.raises(raises):
            reject(user, branch, "no")
    else:
        reject(user, branch, "no")

    branch.refresh_from_db()
    expected = ReviewState.PENDING if raises else ReviewState.REJECTED
    assert branch.review_state == expected
    assert branch.reviewer == (None if raises else user)
    assert github_double.requests == []


# -- the client --


def test_the_client_says_when_github_cannot_be_reached():
    client = github.GitHubClient(TOKEN, base_url="http://127.0.0.1:9")

    with pytest.raises(github.GitHubError, match="Could not reach GitHub") as caught:
        client.create_pull_request("acme", "shop", head="a", base="main", title="t", body="")

    assert TOKEN not in caught.value.message


@pytest.mark.parametrize(
    "url,expected",
    [
        ("https://github.com/acme/shop", ("acme", "shop")),
        ("https://github.com/acme/shop.git", ("acme", "shop")),
        ("https://ghe.example.com/acme/shop/", ("acme", "shop")),
    ],
)
def test_owner_and_repository_come_from_the_url(url, expected):
    assert github.parse_repository(url) == expected


@pytest.mark.skipif(
    not (
        os.environ.get("AGENTLOOP_GITHUB_TEST_TOKEN")
        and os.environ.get("AGENTLOOP_GITHUB_TEST_REPO")
    ),
    reason="set AGENTLOOP_GITHUB_TEST_TOKEN and AGENTLOOP_GITHUB_TEST_REPO (owner/repo) to run",
)
def test_against_real_github():
    """Without AGENTLOOP_GITHUB_TEST_HEAD: GitHub must refuse a head that does not exist
    (checks the token, the endpoint and our error handling, and opens nothing). With it:
    opens a real draft pull request from that branch to AGENTLOOP_GITHUB_TEST_BASE (main)."""
    owner, repo = os.environ["AGENTLOOP_GITHUB_TEST_REPO"].split("/", 1)
    client = github.GitHubClient(
        os.environ["AGENTLOOP_GITHUB_TEST_TOKEN"], base_url=github.DEFAULT_API_URL
    )
    head = os.environ.get("AGENTLOOP_GITHUB_TEST_HEAD")
    base = os.environ.get("AGENTLOOP_GITHUB_TEST_BASE", "main")
    if not head:
        with pytest.raises(github.GitHubError) as caught:
            client.create_pull_request(
                owner,
                repo,
                head="agentloop/no-such-branch-0000",
                base=base,
                title="agentloop test",
                body="",
            )
        assert caught.value.status == 422
        return
    pull = client.create_pull_request(
        owner, repo, head=head, base=base, title="agentloop opt-in test", body="Safe to close."
    )
    assert pull["draft"] is True
    assert pull["html_url"].startswith(f"https://github.com/{owner}/{repo}/pull/")
