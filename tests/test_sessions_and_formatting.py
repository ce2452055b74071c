"""The Studio's sessions list, the viewer's time zone, and the one formatting rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from agentloop import formatting
from agentloop.runs.models import Run, RunKind, RunStatus
from agentloop.teams.models import UserSettings

AT = datetime(2026, 12, 3, 6, 33, tzinfo=UTC)


def make_run(project, creator, prompt, status=RunStatus.SUCCEEDED, kind=RunKind.SESSION):
    return Run.objects.create(
        space=project.space,
        project=project,
        kind=kind,
        config={"harness": "analyst", "sandbox": "fake"},
        prompt=prompt,
        creator=creator,
        status=status,
        created_at=AT,
        started_at=AT,
        finished_at=AT + timedelta(seconds=0.4) if status != RunStatus.RUNNING else None,
    )


@pytest.fixture
def sessions(project, alice, bob):
    return [
        make_run(project, alice, "Alice's finished refunds question"),
        make_run(project, alice, "Alice's live question", status=RunStatus.RUNNING),
        make_run(project, bob, "Bob's latency question"),
        make_run(project, bob, "Nightly automation", kind=RunKind.AUTOMATION),
    ]


def test_the_sessions_list_shows_mine_first_then_the_spaces(sessions, alice, client):
    client.force_login(alice)
    page = client.get(reverse("studio-sessions")).content.decode()
    assert "Alice&#x27;s finished refunds question" in page and "Alice&#x27;s live" in page
    assert "Bob&#x27;s latency" not in page and "Nightly automation" not in page
    assert "2 sessions" in page
    page = client.get(reverse("studio-sessions") + "?scope=all").content.decode()
    assert "Bob&#x27;s latency" in page and "Nightly automation" not in page
    assert "3 sessions" in page


def test_the_sessions_list_filters_by_state_and_text(sessions, alice, client):
    client.force_login(alice)
    page = client.get(reverse("studio-sessions") + "?scope=all&state=active").content.decode()
    assert "Alice&#x27;s live" in page and "refunds" not in page
    page = client.get(reverse("studio-sessions") + "?scope=all&q=latency").content.decode()
    assert "Bob&#x27;s latency" in page and "Alice" not in page.split("<tbody>")[1]


def test_a_bad_filter_is_a_400_that_says_why(sessions, alice, client):
    client.force_login(alice)
    response = client.get(reverse("studio-sessions") + "?state=exploded&project=x")
    assert response.status_code == 400
    page = response.content.decode()
    assert "Unknown state &#x27;exploded&#x27;." in page and "Project must be a project id" in page


def test_an_outsider_sees_no_session_of_the_space(sessions, dave, client):
    client.force_login(dave)
    page = client.get(reverse("studio-sessions") + "?scope=all").content.decode()
    assert "0 sessions" in page and "question" not in page


def test_times_are_shown_in_the_viewers_zone_with_its_name(sessions, alice, client):
    client.force_login(alice)
    url = reverse("studio-session", args=[sessions[0].code])
    assert "2026-12-03 06:33 UTC" in client.get(url).content.decode()
    response = client.post(reverse("account"), {"time_zone": "Europe/Paris"})
    assert response.status_code == 302
    assert UserSettings.time_zone_of(alice) == "Europe/Paris"
    page = client.get(url).content.decode()
    assert "2026-12-03 07:33 CET" in page
    assert "0.4 s" in page  # a sub-second run is not "0 s"


def test_an_unknown_time_zone_is_refused_with_a_message(alice, client):
    client.force_login(alice)
    response = client.post(reverse("account"), {"time_zone": "Mars/Olympus"})
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert UserSettings.time_zone_of(alice) == "UTC"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.4, "0.4 s"), (9.96, "10 s"), (12, "12 s"), (185, "3 min 05 s"), (7500, "2 h 05 min")],
)
def test_durations_read_the_same_everywhere(seconds, shown):
    assert formatting.duration(seconds) == shown


def test_counts_agree_with_their_number():
    assert formatting.count(1, "turn") == "1 turn"
    assert formatting.count(2, "turn") == "2 turns"
    assert formatting.count(12345, "span") == "12,345 spans"
    assert formatting.count(2, "entry", "entries") == "2 entries"


def test_money_reads_in_cents_and_below_a_cent():
    assert formatting.money("0.42") == "$0.42"
    assert formatting.money("0.0042") == "$0.0042"
    assert formatting.money("1234.5") == "$1,234.50"
    assert formatting.money(None) == "—"
