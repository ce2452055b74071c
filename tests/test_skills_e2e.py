"""A real run with skills in a real bubblewrap sandbox: the custom skill is cloned inside.

The skill's repository is a local bare repository bound read-only into the
sandbox (SANDBOX_RO_BINDS) and named by a file:// URL, since sandboxes reach
no other host.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from agentloop.runs import actions
from agentloop.runs.models import RunStatus
from tests.e2e_support import needs_bwrap, runner_log, wait_for_status
from tests.skill_factory import GH_TOKEN, custom_skill, github_skill
from tests.test_skills_runner import SKILL_MD, git

pytest_plugins = ["tests.e2e_support", "tests.gateway_server"]  # sandbox_root; asgi_server
pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    needs_bwrap,
    pytest.mark.skipif(shutil.which("git") is None, reason="needs git"),
]

INSIDE = "/opt/skill-sources"


@pytest.fixture
def skill_sources(settings):
    # World-traversable, like sandbox_root: the sandbox uid must read it.
    root = Path(tempfile.mkdtemp(prefix="agentloop-skills-", dir="/tmp"))
    root.chmod(0o755)
    work = root / "src"
    work.mkdir()
    git("init", "--quiet", "--initial-branch=main", cwd=work)
    (work / "SKILL.md").write_text(SKILL_MD)
    git("add", ".", cwd=work)
    git("commit", "--quiet", "-m", "first", cwd=work)
    git("clone", "--quiet", "--bare", str(work), str(root / "house.git"), cwd=root)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    settings.SANDBOX_RO_BINDS = [f"{root}:{INSIDE}"]
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_a_run_installs_its_custom_skill_inside_the_sandbox(
    asgi_server, served_db, settings, sandbox_root, skill_sources, project, alice
):
    settings.AGENTLOOP_PUBLIC_URL = asgi_server
    house = custom_skill(
        project.space,
        alice,
        "house style",
        f"file://{INSIDE}/house.git",
        env={"HOUSE_TOKEN": "house-secret-value-1"},
    )
    gh = github_skill(project.space, alice)
    config = {
        "harness": "analyst",
        "sandbox": "local",
        "time_limit_seconds": 300,
        "skills": [house.pk, gh.pk],
    }
    run = actions.start_session(alice, project, config, "Any errors?")

    run = wait_for_status(run, {RunStatus.SUCCEEDED, RunStatus.FAILED})
    assert run.status == RunStatus.SUCCEEDED, f"{run.exit_reason}\n{runner_log(run)}"
    home = Path(run.sandbox["data"]["dir"]) / "home"
    installed = home / ".claude" / "skills" / "house style" / "SKILL.md"
    assert installed.is_file(), runner_log(run)
    assert installed.read_text() == SKILL_MD
    log = runner_log(run)
    assert "skill house style" not in log  # no install problem reported
    assert GH_TOKEN not in log and "house-secret-value-1" not in log
    assert os.path.isdir(home / ".claude" / "skills" / "agentloop-traces")
