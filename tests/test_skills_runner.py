"""The runner installs custom skills: a real git clone of a local bare repository (file://)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from agentloop.runner.skills import install_skills
from agentloop.runner.workspace import prepare_workspace

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

SKILL_MD = (
    "---\nname: house-style\ndescription: Our writing rules.\n---\n\nWrite short sentences.\n"
)


def git(*args, cwd):
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


@pytest.fixture
def skill_repo(tmp_path) -> str:
    """A bare repository with SKILL.md on main and a different one on tag v2."""
    work = tmp_path / "src"
    work.mkdir()
    git("init", "--quiet", "--initial-branch=main", cwd=work)
    (work / "SKILL.md").write_text(SKILL_MD)
    (work / "scripts").mkdir()
    (work / "scripts" / "check.sh").write_text("#!/bin/sh\necho ok\n")
    git("add", ".", cwd=work)
    git("commit", "--quiet", "-m", "first", cwd=work)
    git("tag", "v1", cwd=work)
    (work / "SKILL.md").write_text(SKILL_MD + "\nVersion two.\n")
    git("commit", "--quiet", "-am", "second", cwd=work)
    bare = tmp_path / "skill.git"
    git("clone", "--quiet", "--bare", str(work), str(bare), cwd=tmp_path)
    return f"file://{bare}"


def test_a_custom_skill_is_cloned_into_claude_skills(tmp_path, skill_repo):
    home = tmp_path / "home"
    problems = install_skills(
        home, [{"name": "house style", "repo_url": skill_repo, "ref": "main"}], {"PATH": os.defpath}
    )
    assert problems == []
    installed = home / ".claude" / "skills" / "house style"
    assert (installed / "SKILL.md").read_text().endswith("Version two.\n")
    assert (installed / "scripts" / "check.sh").exists()
    assert not (installed / ".git").exists()


def test_the_ref_picks_the_version(tmp_path, skill_repo):
    home = tmp_path / "home"
    install_skills(home, [{"name": "s", "repo_url": skill_repo, "ref": "v1"}], {"PATH": os.defpath})
    assert (home / ".claude" / "skills" / "s" / "SKILL.md").read_text() == SKILL_MD


def test_prepare_workspace_installs_the_spec_skills(tmp_path, skill_repo):
    home = tmp_path / "home"
    spec = {
        "project": {"id": 1},
        "skills": [{"name": "house-style", "repo_url": skill_repo, "ref": "main"}],
    }
    prepare_workspace(tmp_path / "ws", spec, {"HOME": str(home), "PATH": os.environ["PATH"]})
    skills = home / ".claude" / "skills"
    assert sorted(p.name for p in skills.iterdir()) == ["agentloop-traces", "house-style"]
    assert (skills / "house-style" / "SKILL.md").exists()


def test_a_missing_ref_is_reported_and_leaves_nothing(tmp_path, skill_repo):
    home = tmp_path / "home"
    logged = []
    problems = install_skills(
        home,
        [{"name": "s", "repo_url": skill_repo, "ref": "no-such-branch"}],
        {"PATH": os.defpath},
        log=logged.append,
    )
    assert len(problems) == 1 and problems[0].startswith("skill s: git fetch failed:")
    assert logged == problems
    assert not (home / ".claude" / "skills" / "s").exists()


@pytest.mark.parametrize(
    "skill,problem",
    [
        ({"name": "..", "repo_url": "file:///x", "ref": "main"}, "skill name '..' is not allowed"),
        (
            {"name": "a/b", "repo_url": "file:///x", "ref": "main"},
            "skill name 'a/b' is not allowed",
        ),
        (
            {"name": "s", "repo_url": "--upload-pack=touch /tmp/pwned", "ref": "main"},
            "skill s: repository URL is not allowed",
        ),
        (
            {"name": "s", "repo_url": "file:///x", "ref": "--upload-pack=x"},
            "skill s: ref is not allowed",
        ),
    ],
)
def test_the_runner_checks_what_it_runs_git_with(skill, problem, tmp_path):
    home = tmp_path / "home"
    assert install_skills(home, [skill], {"PATH": os.defpath}, log=None) == [problem]
    assert not (home / ".claude" / "skills").exists() or not any(
        (home / ".claude" / "skills").iterdir()
    )


def test_one_bad_skill_does_not_stop_the_others(tmp_path, skill_repo):
    home = tmp_path / "home"
    problems = install_skills(
        home,
        [
            {"name": "bad", "repo_url": skill_repo, "ref": "nope"},
            {"name": "good", "repo_url": skill_repo, "ref": "main"},
        ],
        {"PATH": os.defpath},
        log=None,
    )
    assert len(problems) == 1
    assert Path(home / ".claude" / "skills" / "good" / "SKILL.md").exists()
