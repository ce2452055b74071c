"""A real ASGI server (daphne, as in production) for the gateway tests, in this process.

pytest-django's live_server is WSGI, and async streaming views need ASGI:
under WSGI Django buffers an async stream whole. So daphne runs on a random
port in a thread of the test process: it sees the test database (SQLite's
shared-cache in-memory test database, or the PostgreSQL test database) as long
as the test commits its data — use `transactional_db`. Twisted's reactor can
only run once per process, hence one server for the whole session.
"""

from __future__ import annotations

import threading

import pytest

from tests.fake_anthropic import FakeAnthropic

_server: dict = {}


def start_daphne() -> str:
    if "url" in _server:
        return _server["url"]
    from daphne.server import Server  # installs the asyncio reactor: import late

    from agentloop.asgi import application

    ready = threading.Event()
    server = Server(
        application,
        endpoints=["tcp:port=0:interface=127.0.0.1"],
        signal_handlers=False,
        verbosity=0,
        http_timeout=None,
    )
    original = server.listen_success

    def listen_success(port):
        original(port)
        ready.set()

    server.listen_success = listen_success
    threading.Thread(target=server.run, name="daphne", daemon=True).start()
    if not ready.wait(30):
        raise RuntimeError("daphne did not start listening within 30 s")
    host, port = server.listening_addresses[0]
    _server["url"] = f"http://{host}:{port}"
    return _server["url"]


@pytest.fixture
def served_db(transactional_db) -> None:
    """The test database with committed data, so daphne's threads see it.

    On SQLite the test database is a WAL file (agentloop/settings_test.py), so
    the server's own connections read and write it as in production.
    """


@pytest.fixture(scope="session")
def asgi_server() -> str:
    """The base URL of a daphne server running the project's ASGI application."""
    return start_daphne()


@pytest.fixture(scope="session")
def upstream_model():
    server = FakeAnthropic().start()
    yield server
    server.close()


REAL_KEY = "sk-ant-real-upstream-key-0123456789"


@pytest.fixture
def real_key() -> str:
    """The upstream key the gateway is configured with (`gateway` fixture)."""
    return REAL_KEY


@pytest.fixture
def gateway(settings, upstream_model, asgi_server, served_db):
    """The gateway's URL, forwarding to the fake upstream with REAL_KEY."""
    settings.AGENTLOOP_LLM_UPSTREAM_URL = upstream_model.url
    settings.AGENTLOOP_ANTHROPIC_API_KEY = REAL_KEY
    return f"{asgi_server}/llm/anthropic"
