"""DatabaseThreads: connections kept open per thread, recovered when they break, closed on all."""

from __future__ import annotations

import asyncio
import threading

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from agentloop.database_threads import POSTGRESQL_THREADS, DatabaseThreads
from agentloop.teams.models import Space

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def db_thread():
    thread = DatabaseThreads("test-database-thread", size=1)
    yield thread
    thread.close()


def run(db_thread, function, **kwargs):
    return asyncio.run(db_thread.run(function, **kwargs))


def raw_connection():
    # The object itself, not its id: holding it keeps a new connection from
    # reusing its address.
    connection.ensure_connection()
    return connection.connection


def test_calls_share_one_connection_that_stays_open(db_thread):
    first = run(db_thread, raw_connection)
    assert run(db_thread, raw_connection) is first
    assert run(db_thread, lambda: Space.objects.count()) == 0
    assert run(db_thread, raw_connection) is first


def test_it_sees_what_others_committed_since_its_last_call(db_thread):
    assert run(db_thread, lambda: Space.objects.count()) == 0
    Space.objects.create(name="committed by the test")
    assert run(db_thread, lambda: list(Space.objects.values_list("name", flat=True))) == [
        "committed by the test"
    ]


def break_the_connection():
    connection.ensure_connection()
    connection.connection.close()  # behind Django's back, like a dropped socket


def test_a_broken_connection_is_replaced_and_a_read_retried(db_thread):
    first = run(db_thread, raw_connection)
    run(db_thread, break_the_connection)
    attempts = []

    def count_spaces():
        attempts.append(1)
        return Space.objects.count()

    assert run(db_thread, count_spaces, retry=True) == 0
    assert len(attempts) == 2  # the first attempt hit the dead connection
    assert run(db_thread, raw_connection) is not first


def test_without_retry_the_error_reaches_the_caller_and_the_next_call_reconnects(db_thread):
    run(db_thread, break_the_connection)
    with pytest.raises(DatabaseError):
        run(db_thread, lambda: Space.objects.count())
    assert run(db_thread, lambda: Space.objects.count()) == 0


def test_a_failed_transaction_is_not_left_open(db_thread):
    Space.objects.create(name="taken", slug="taken")

    def duplicate():
        with transaction.atomic():
            Space.objects.create(name="fine", slug="fine")
            Space.objects.create(name="again", slug="taken")

    with pytest.raises(IntegrityError):
        run(db_thread, duplicate)
    assert run(db_thread, lambda: connection.get_autocommit() and not connection.in_atomic_block)
    assert sorted(Space.objects.values_list("slug", flat=True)) == ["taken"]


def test_close_closes_the_threads_connection(db_thread):
    run(db_thread, raw_connection)
    db_thread.close()
    assert run(db_thread, lambda: connection.connection is None)


def test_the_default_size_is_one_thread_on_sqlite_and_a_pool_on_postgresql():
    threads = DatabaseThreads("test-default-size")
    try:
        expected = 1 if connection.vendor == "sqlite" else POSTGRESQL_THREADS
        assert threads.executor()._max_workers == expected
    finally:
        threads.close()


def test_close_closes_the_connection_of_every_thread_in_the_pool():
    pool = DatabaseThreads("test-pool", size=3)
    opened = threading.Barrier(3)

    def open_and_wait():
        connection.ensure_connection()
        opened.wait(timeout=10)  # three calls at once: one per thread
        return threading.get_ident(), connection.connection

    async def three_at_once():
        return await asyncio.gather(*(pool.run(open_and_wait) for _ in range(3)))

    first = asyncio.run(three_at_once())
    assert len({ident for ident, _ in first}) == 3
    pool.close()
    reopened = asyncio.run(three_at_once())
    assert all(raw is not old for _, raw in reopened for _, old in first)
    pool.close()
