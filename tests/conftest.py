"""Shared fixtures: one space with a person in each role, and an outsider.

alice  — admin of "Acme" (the owner: she created it)
bob    — member of Acme
carol  — viewer of Acme
dave   — outsider: admin of his own space "Other", nothing in Acme
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from agentloop import database_threads
from agentloop.teams.models import Membership, Project, Role, Space

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="session", autouse=True)
def database_threads_closed_before_teardown(django_db_setup):
    """Close the connections the server's database threads keep open
    (agentloop/database_threads.py) before the test database is dropped:
    PostgreSQL refuses to drop a database that has connections."""
    yield
    database_threads.close_all()


@pytest.fixture(autouse=True)
def key_failures_forgotten():
    """Every test starts with no failed key authentications counted
    (agentloop/key_throttle.py): they all come from 127.0.0.1."""
    from agentloop.key_throttle import throttle

    throttle.clear()
    yield
    throttle.clear()


def make_user(username: str):
    return get_user_model().objects.create_user(
        username=username, email=f"{username}@example.com", password=PASSWORD
    )


@pytest.fixture
def alice(db):
    return make_user("alice")


@pytest.fixture
def bob(db):
    return make_user("bob")


@pytest.fixture
def carol(db):
    return make_user("carol")


@pytest.fixture
def dave(db):
    return make_user("dave")


@pytest.fixture
def space(alice, bob, carol):
    space = Space.create_with_owner("Acme", alice)
    Membership.objects.create(space=space, user=bob, role=Role.MEMBER)
    Membership.objects.create(space=space, user=carol, role=Role.VIEWER)
    return space


@pytest.fixture
def project(space):
    return Project.objects.create(
        space=space, name="support-bot", description="Customer support agent"
    )


@pytest.fixture
def other_space(dave):
    return Space.create_with_owner("Other", dave)


@pytest.fixture
def other_project(other_space):
    return Project.objects.create(space=other_space, name="other-bot")


@pytest.fixture
def users(alice, bob, carol, dave):
    """By role name, for permission matrices: owner, member, viewer, outsider."""
    return {"owner": alice, "member": bob, "viewer": carol, "outsider": dave}


@pytest.fixture
def client_for(client):
    """client_for(user) -> a test client logged in as user (None: anonymous)."""
    from django.test import Client

    def make(user):
        c = Client()
        if user is not None:
            c.force_login(user)
        return c

    return make
