"""Automations pages: list, create/edit with validation, history, pause/resume, run now."""

from __future__ import annotations

import pytest
from django.urls import reverse

from agentloop.automations import actions as automations
from agentloop.automations.models import Automation, AutomationFire
from agentloop.presets.models import AgentPreset
from agentloop.runs import actions
from agentloop.runs.models import Run

ROLES = [("owner", 302), ("member", 302), ("viewer", 403), ("outsider", 404), ("anonymous", 302)]


@pytest.fixture(autouse=True)
def no_launch(monkeypatch):
    monkeypatch.setattr(actions, "enqueue_launch", lambda run: None)


@pytest.fixture
def preset(space):
    return AgentPreset.objects.create(space=space, name="Analyst", harness="analyst")


def form_data(project, preset, **fields):
    data = {
        "name": "hourly",
        "project": project.pk,
        "preset": preset.pk,
        "prompt": "Check errors.",
        "trigger": "cron",
        "cron_expression": "0 * * * *",
        "time_zone": "Europe/Berlin",
        "metric": "",
        "comparison": ">",
        "threshold": "",
        "window_minutes": 60,
        "every_minutes": 5,
        "min_spans": 10,
        "cooldown_minutes": 0,
        "max_concurrent": 1,
        "max_consecutive_failures": 3,
    }
    data.update(fields)
    return data


@pytest.fixture
def automation(bob, project, preset):
    from agentloop.automations.actions import save_automation

    return save_automation(
        bob,
        Automation(
            space=project.space,
            project=project,
            preset=preset,
            name="nightly",
            prompt="p",
            trigger="cron",
            cron_expression="0 3 * * *",
        ),
    )


def client_of(users, client_for, role):
    return client_for(None if role == "anonymous" else users[role])


@pytest.mark.parametrize("role,status", ROLES)
def test_create_permissions(space, project, preset, users, client_for, role, status):
    response = client_of(users, client_for, role).post(
        reverse("automation-create", args=[space.pk]), form_data(project, preset)
    )
    assert response.status_code == status
    created = Automation.objects.filter(name="hourly").first()
    assert (created is not None) is (role in ("owner", "member"))
    if created:
        assert created.time_zone == "Europe/Berlin" and created.next_fire_at is not None
        assert response["Location"] == reverse("automation-detail", args=[created.pk])


def test_a_bad_cron_expression_gets_a_clear_error_and_stores_nothing(
    space, project, preset, users, client_for
):
    response = client_for(users["member"]).post(
        reverse("automation-create", args=[space.pk]),
        form_data(project, preset, cron_expression="every hour"),
    )
    assert response.status_code == 400
    assert "needs 5 fields" in response.content.decode()
    assert not Automation.objects.exists()


def test_a_bad_threshold_gets_a_clear_error(space, project, preset, users, client_for):
    client = client_for(users["member"])
    url = reverse("automation-create", args=[space.pk])
    response = client.post(
        url, form_data(project, preset, trigger="metric", metric="error_rate", threshold="lots")
    )
    assert response.status_code == 400
    assert "Enter the threshold as a number" in response.content.decode()
    response = client.post(
        url, form_data(project, preset, trigger="metric", metric="error_rate", threshold="20")
    )
    assert "A rate is between 0 and 1" in response.content.decode()
    assert not Automation.objects.exists()


def test_edit_shows_next_fires_and_saves(automation, users, client_for):
    client = client_for(users["member"])
    page = client.get(reverse("automation-edit", args=[automation.pk])).content.decode()
    assert "Next fires:" in page
    response = client.post(
        reverse("automation-edit", args=[automation.pk]),
        form_data(automation.project, automation.preset, name="renamed"),
    )
    assert response.status_code == 302
    automation.refresh_from_db()
    assert automation.name == "renamed" and automation.cron_expression == "0 * * * *"


@pytest.mark.parametrize("role,status", ROLES)
def test_run_now_permissions(automation, users, client_for, role, status):
    scheduled = automation.next_fire_at
    response = client_of(users, client_for, role).post(
        reverse("automation-run-now", args=[automation.pk])
    )
    assert response.status_code == status
    assert Run.objects.count() == (1 if role in ("owner", "member") else 0)
    automation.refresh_from_db()
    assert automation.next_fire_at == scheduled


@pytest.mark.parametrize("role,status", ROLES)
def test_pause_and_resume_permissions(automation, users, client_for, role, status):
    client = client_of(users, client_for, role)
    response = client.post(reverse("automation-pause", args=[automation.pk]))
    assert response.status_code == status
    automation.refresh_from_db()
    allowed = role in ("owner", "member")
    assert automation.enabled is (not allowed)
    if allowed:
        assert automation.next_fire_at is None
        client.post(reverse("automation-resume", args=[automation.pk]))
        automation.refresh_from_db()
        assert automation.enabled and automation.next_fire_at is not None


@pytest.mark.parametrize("role,status", ROLES)
def test_delete_permissions(automation, users, client_for, role, status):
    response = client_of(users, client_for, role).post(
        reverse("automation-delete", args=[automation.pk])
    )
    assert response.status_code == status
    assert Automation.objects.exists() is (role not in ("owner", "member"))


def test_list_and_history_show_what_happened(automation, users, client_for):
    member = client_for(users["member"])
    member.post(reverse("automation-run-now", args=[automation.pk]))
    member.post(reverse("automation-pause", args=[automation.pk]))
    response = member.post(reverse("automation-run-now", args=[automation.pk]), follow=True)
    assert "Not started. Paused by bob." in response.content.decode()
    listing = client_for(users["viewer"]).get(reverse("automation-list")).content.decode()
    assert 'data-automation="nightly"' in listing and "cron 0 3 * * * (UTC)" in listing
    assert "paused" in listing and "Queued" in listing
    detail = (
        client_for(users["viewer"])
        .get(reverse("automation-detail", args=[automation.pk]))
        .content.decode()
    )
    assert "manual by bob" in detail and "Run started" in detail
    assert "Run now" not in detail  # viewers look only
    assert AutomationFire.objects.count() == 1
    assert (
        client_for(users["outsider"])
        .get(reverse("automation-detail", args=[automation.pk]))
        .status_code
        == 404
    )
    outsider_list = client_for(users["outsider"]).get(reverse("automation-list")).content.decode()
    assert "nightly" not in outsider_list


# --- docs/roles.md, route by route, on an automation an admin created ----------------------


@pytest.fixture
def admins_automation(alice, project, preset):
    return automations.save_automation(
        alice,
        Automation(
            space=project.space,
            project=project,
            preset=preset,
            name="admin's nightly",
            prompt="p",
            trigger="cron",
            cron_expression="0 3 * * *",
        ),
    )


ADMINS_AUTOMATION = [
    # route, owner, member, viewer, outsider
    ("automation-edit", 200, 403, 403, 404),
    ("automation-delete", 302, 403, 403, 404),
    ("automation-pause", 302, 302, 403, 404),
    ("automation-run-now", 302, 302, 403, 404),
]


@pytest.mark.parametrize("route,owner,member,viewer,outsider", ADMINS_AUTOMATION)
def test_the_role_table_on_an_admins_automation(
    admins_automation, users, client_for, route, owner, member, viewer, outsider
):
    for role, expected in (
        ("viewer", viewer), ("outsider", outsider), ("member", member), ("owner", owner)
    ):  # fmt: skip
        client = client_of(users, client_for, role)
        url = reverse(route, args=[admins_automation.pk])
        response = client.get(url) if route == "automation-edit" else client.post(url)
        assert response.status_code == expected, (route, role)
        if route == "automation-delete":
            exists = Automation.objects.filter(pk=admins_automation.pk).exists()
            assert exists is (role != "owner"), role


def test_a_member_sees_no_edit_or_delete_on_an_admins_automation(
    admins_automation, users, client_for
):
    page = (
        client_of(users, client_for, "member")
        .get(reverse("automation-detail", args=[admins_automation.pk]))
        .content.decode()
    )
    assert reverse("automation-edit", args=[admins_automation.pk]) not in page
    assert "Only an admin, or the member who created it" in page
