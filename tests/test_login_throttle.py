"""Login throttling (django-axes): wrong passwords lock the account and the address.

Before: 30 wrong passwords in 23 s, then the right one worked. Now five wrong
passwords in a row for one account, or from one address, lock it for 15
minutes, the right password included, with a page that says so (429). Time
is moved by ageing the stored attempts, never by sleeping.
"""

from __future__ import annotations

from datetime import timedelta

from axes.models import AccessAttempt
from django.test import Client

from tests.conftest import PASSWORD

LIMIT = 5  # settings.AXES_FAILURE_LIMIT


def log_in(username: str, password: str, address: str = "127.0.0.1"):
    client = Client(REMOTE_ADDR=address)
    response = client.post("/login/", {"username": username, "password": password})
    return response, "_auth_user_id" in client.session


def test_five_wrong_passwords_lock_the_account_even_for_the_right_one(alice):
    for _ in range(LIMIT - 1):
        response, logged_in = log_in("alice", "wrong")
        assert response.status_code == 200 and not logged_in
        assert "do not match an account" in response.content.decode()
    response, _ = log_in("alice", "wrong")
    assert response.status_code == 429

    response, logged_in = log_in("alice", PASSWORD)
    assert not logged_in
    assert response.status_code == 429
    page = response.content.decode()
    assert "Too many failed logins" in page
    assert "after\n    5 wrong passwords in a row" in page
    assert "Try again in 15 minutes." in page


def test_the_account_is_locked_from_every_address(alice, bob):
    for n in range(LIMIT):
        log_in("alice", "wrong", address=f"10.0.0.{n + 1}")
    response, logged_in = log_in("alice", PASSWORD, address="10.0.0.99")
    assert (response.status_code, logged_in) == (429, False)
    # Someone else, from an address that guessed nothing, is not locked out.
    response, logged_in = log_in("bob", PASSWORD, address="10.0.0.98")
    assert logged_in


def test_an_address_that_guesses_many_accounts_is_locked(alice, bob, carol):
    for username in ["alice", "bob", "carol", "mallory", "root"]:
        log_in(username, "wrong", address="10.9.9.9")
    response, logged_in = log_in("bob", PASSWORD, address="10.9.9.9")
    assert (response.status_code, logged_in) == (429, False)
    # Bob's own account had one failure: from his usual address he gets in.
    _, logged_in = log_in("bob", PASSWORD, address="10.0.0.2")
    assert logged_in


def test_the_lock_lifts_after_the_cool_off(alice):
    for _ in range(LIMIT):
        log_in("alice", "wrong")
    assert log_in("alice", PASSWORD)[0].status_code == 429
    # Sixteen minutes later (the attempts aged, not slept).
    for attempt in AccessAttempt.objects.all():
        attempt.attempt_time -= timedelta(minutes=16)
        attempt.save()
    _, logged_in = log_in("alice", PASSWORD)
    assert logged_in


def test_a_success_resets_the_count(alice):
    for _ in range(LIMIT - 1):
        log_in("alice", "wrong")
    assert log_in("alice", PASSWORD)[1]
    for _ in range(LIMIT - 1):
        log_in("alice", "wrong")
    _, logged_in = log_in("alice", PASSWORD)
    assert logged_in
