"""start_session, send_followup and cancel: who may, and what gets stored."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404

from agentloop.runs import actions
from agentloop.runs.access import get_run_for_user
from agentloop.runs.models import EventKind, EventSource, Run, RunStatus

pytest_plugins = ["tests.fake_sandbox"]  # the fake_provider fixture

CONFIG = {"harness": "analyst", "sandbox": "fake", "time_limit_seconds": 120}
ROLES = ["owner", "member", "viewer", "outsider", "anonymous"]
ALLOWED = {
    "owner": None,
    "member": None,
    "viewer": PermissionDenied,
    "outsider": Http404,
    "anonymous": Http404,
}


@pytest.fixture
def who(users):
    def pick(role):
        return AnonymousUser() if role == "anonymous" else users[role]

    return pick


@pytest.fixture
def running_run(project, alice, fake_provider, django_capture_on_commit_callbacks):
    run = actions.start_session(alice, project, CONFIG, "Why do refunds fail?")
    run.transition(RunStatus.PROVISIONING)
    run.transition(RunStatus.RUNNING)
    return run


@pytest.mark.parametrize("role", ROLES)
def test_start_session_permissions(
    role, who, project, fake_provider, django_capture_on_commit_callbacks
):
    user = who(role)
    expected = ALLOWED[role]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        if expected:
            with pytest.raises(expected):
                actions.start_session(user, project, CONFIG, "Why do refunds fail?")
        else:
            run = actions.start_session(user, project, CONFIG, "Why do refunds fail?")
    if expected:
        assert not Run.objects.exists()
        assert callbacks == []
        return
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED
    assert run.creator == user
    assert (run.space, run.project, run.kind, run.trigger) == (
        project.space,
        project,
        "session",
        "manual",
    )
    assert run.config["harness"] == "analyst" and run.config["sandbox"] == "fake"
    assert run.config["time_limit_seconds"] == 120 and run.config["max_turns"] == 50
    first = run.events.get()
    assert (first.seq, first.source, first.kind) == (1, EventSource.USER, EventKind.MESSAGE)
    assert first.payload == {"role": "user", "text": "Why do refunds fail?"}
    # Nothing launched before the commit; once the commit's callbacks run,
    # exactly one sandbox starts (other callbacks, e.g. the transcript doorbell, may be there too).
    assert fake_provider.started == []
    for callback in callbacks:
        callback()
    assert [spec.run_code for spec in fake_provider.started] == [str(run.code)]


def test_start_session_launches_after_commit(
    project, alice, fake_provider, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        run = actions.start_session(alice, project, CONFIG, "Investigate")
    run.refresh_from_db()
    # Q_CLUSTER sync in tests: launch_run ran at commit and started the fake sandbox.
    assert run.status == RunStatus.PROVISIONING
    assert [spec.run_code for spec in fake_provider.started] == [str(run.code)]
    assert run.sandbox["provider"] == "fake"


@pytest.mark.parametrize(
    ("config", "prompt", "message"),
    [
        ({**CONFIG, "harness": "gpt-engineer"}, "x", "Unknown harness 'gpt-engineer'"),
        ({**CONFIG, "sandbox": "docker"}, "x", "Unknown sandbox provider 'docker'"),
        ({**CONFIG, "time_limit_seconds": 0}, "x", "time_limit_seconds must be between"),
        ({**CONFIG, "max_turns": "many"}, "x", "max_turns must be a whole number"),
        ({**CONFIG, "env": {"AGENTLOOP_RUN_TOKEN": "x"}}, "x", "names that are not allowed"),
        (CONFIG, "   ", "The prompt is empty"),
    ],
)
def test_start_session_rejects_bad_input_and_stores_nothing(
    project, alice, fake_provider, config, prompt, message
):
    with pytest.raises(ValidationError) as error:
        actions.start_session(alice, project, config, prompt)
    assert message in " ".join(error.value.messages)
    assert not Run.objects.exists()


def test_secret_env_is_encrypted_and_only_named_in_the_snapshot(project, alice, fake_provider):
    config = {**CONFIG, "secret_env": {"GITHUB_TOKEN": "ghp_supersecretvalue"}}
    run = actions.start_session(alice, project, config, "use ghp_supersecretvalue please")
    run.refresh_from_db()
    assert run.config["secret_env_names"] == ["GITHUB_TOKEN"]
    assert "ghp_supersecretvalue" not in str(run.config)
    assert "ghp_supersecretvalue" not in run.secret_env_encrypted
    assert run.secret_env() == {"GITHUB_TOKEN": "ghp_supersecretvalue"}
    assert run.events.get().payload["text"] == "use [REDACTED:GITHUB_TOKEN] please"


@pytest.mark.parametrize("role", ROLES)
def test_send_followup_permissions(role, who, running_run):
    user = who(role)
    expected = ALLOWED[role]
    if expected:
        with pytest.raises(expected):
            actions.send_followup(user, running_run, "And the 500s?")
        assert running_run.events.filter(source=EventSource.USER).count() == 1
        return
    event = actions.send_followup(user, running_run, "And the 500s?")
    stored = running_run.events.filter(source=EventSource.USER).order_by("seq").last()
    assert stored.pk == event.pk
    assert stored.payload == {"role": "user", "text": "And the 500s?", "author": user.username}


@pytest.mark.parametrize("status", [RunStatus.QUEUED, RunStatus.PROVISIONING])
def test_a_followup_to_a_starting_run_waits_for_its_first_turn(
    project, alice, fake_provider, status
):
    run = actions.start_session(alice, project, CONFIG, "Investigate")
    Run.objects.filter(pk=run.pk).update(status=status)
    actions.send_followup(alice, run, "and the 500s?")
    run.refresh_from_db()
    assert run.status == status  # not relaunched: the runner's inbox hands it over
    assert [e.payload.get("text") for e in run.events.order_by("seq")] == [
        "Investigate",
        "and the 500s?",
    ]


def test_a_followup_to_a_stopping_run_is_refused(running_run, alice):
    actions.cancel(alice, running_run)
    with pytest.raises(actions.RunNotActive, match="stopping"):
        actions.send_followup(alice, running_run, "hello?")
    assert running_run.events.filter(source=EventSource.USER).count() == 1


def finish(run, status=RunStatus.SUCCEEDED):
    run.refresh_from_db()
    run.transition(status, exit_reason="done")
    return run


@pytest.mark.parametrize("ended", [RunStatus.SUCCEEDED, RunStatus.CANCELLED, RunStatus.FAILED])
def test_a_followup_continues_a_finished_session(
    running_run, bob, ended, django_capture_on_commit_callbacks
):
    finish(running_run, ended)
    running_run.append_event(
        EventSource.AGENT, EventKind.MESSAGE, {"role": "assistant", "text": "Refunds time out."}
    )
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        actions.send_followup(bob, running_run, "Since when?")
    running_run.refresh_from_db()
    assert running_run.status == RunStatus.QUEUED
    assert (running_run.finished_at, running_run.exit_reason) == (None, "")
    launches = [c for c in callbacks if "enqueue_launch" in c.__qualname__]
    assert len(launches) == 1  # its launch, after commit (the others ring the doorbell)
    last = running_run.events.order_by("seq").last()
    assert last.payload == {"state": "queued", "from": ended, "detail": "Continued by bob."}
    # What its runner is handed: the question, the conversation before, where the inbox starts.
    assert actions.continuation(running_run) == {
        "prompt": "Since when?",
        "inbox_after": last.seq,
        "history": [
            {"role": "user", "text": "Why do refunds fail?"},
            {"role": "assistant", "text": "Refunds time out."},
        ],
    }


def test_a_run_never_continued_has_no_continuation(running_run):
    assert actions.continuation(running_run) == {}


@pytest.mark.parametrize("role", ROLES)
def test_who_may_continue_a_finished_session(role, who, running_run):
    finish(running_run)
    user = who(role)
    expected = ALLOWED[role]
    if expected:
        with pytest.raises(expected):
            actions.send_followup(user, running_run, "Since when?")
        running_run.refresh_from_db()
        assert running_run.status == RunStatus.SUCCEEDED
        return
    actions.send_followup(user, running_run, "Since when?")
    running_run.refresh_from_db()
    assert running_run.status == RunStatus.QUEUED


def test_a_continued_run_is_launched_in_a_new_sandbox_after_the_old_one_goes(
    running_run, alice, fake_provider
):
    from agentloop.runs.models import ServiceKey
    from agentloop.runs.tasks import launch_run

    Run.objects.filter(pk=running_run.pk).update(
        sandbox={"provider": "fake", "id": "old-box", "data": {}}
    )
    ServiceKey.mint(running_run, expires_at=None)
    finish(running_run)
    actions.send_followup(alice, running_run, "Since when?")

    assert launch_run(running_run.pk) is True
    running_run.refresh_from_db()
    assert fake_provider.cleaned == ["old-box"] and fake_provider.stopped == ["old-box"]
    assert running_run.status == RunStatus.PROVISIONING
    assert running_run.sandbox["id"] == f"fake-{running_run.code}"
    assert running_run.sandbox_cleaned_at is None
    # The new launch's two keys (the runner's and the harness's); the old ones are dead.
    assert ServiceKey.objects.filter(run=running_run, revoked_at__isnull=True).count() == 2
    assert running_run.secrets_handed_out_at is None  # the new runner reads them once


@pytest.mark.parametrize("role", ROLES)
def test_cancel_permissions_on_a_running_run(role, who, running_run):
    user = who(role)
    expected = ALLOWED[role]
    if expected:
        with pytest.raises(expected):
            actions.cancel(user, running_run)
        running_run.refresh_from_db()
        assert running_run.stop_requested_at is None
        return
    assert actions.cancel(user, running_run) is True
    running_run.refresh_from_db()
    # Still running: its runner sees `stop` and ends it (or the reconciler does).
    assert running_run.status == RunStatus.RUNNING
    assert running_run.stop_requested_at is not None
    last = running_run.events.order_by("seq").last()
    assert last.payload == {"state": "running", "detail": f"Stop requested by {user.username}."}
    assert actions.cancel(user, running_run) is False  # asking twice changes nothing


def test_cancel_a_queued_run_ends_it_at_once(
    project, bob, fake_provider, django_capture_on_commit_callbacks
):
    run = actions.start_session(bob, project, CONFIG, "Investigate")
    assert actions.cancel(bob, run) is True
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert run.exit_reason == "Cancelled by bob."
    # The launch task that was queued finds it cancelled and does nothing.
    from agentloop.runs.tasks import launch_run

    assert launch_run(run.pk) is False
    assert fake_provider.started == []


def test_cancel_a_finished_run_does_nothing(running_run, alice):
    running_run.transition(RunStatus.SUCCEEDED)
    assert actions.cancel(alice, running_run) is False
    running_run.refresh_from_db()
    assert running_run.stop_requested_at is None


@pytest.mark.parametrize("role", ROLES)
def test_get_run_for_user(role, who, running_run):
    user = who(role)
    if role in ("outsider", "anonymous"):
        with pytest.raises(Http404):
            get_run_for_user(user, running_run.code)
    else:
        assert get_run_for_user(user, running_run.code) == running_run
    if role == "viewer":
        with pytest.raises(PermissionDenied):
            get_run_for_user(user, running_run.code, "use")


def test_get_run_for_user_with_a_malformed_code(alice):
    with pytest.raises(Http404):
        get_run_for_user(alice, "not-a-uuid")
