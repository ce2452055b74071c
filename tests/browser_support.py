"""Fixtures for the browser tests: real headless Chromium against real daphne.

- `browser`: Debian's chromium driven by Playwright (never `playwright install`:
  CI installs the `chromium` package, we point Playwright at its binary).
- `app_url`: the project's ASGI application (pages and the transcript
  websocket) served by daphne in a thread of this process — the same server
  the gateway tests use (tests.gateway_server) — so it sees the test database
  and the settings overrides of the test. Tests that use it must be
  transactional: the server's threads read only committed rows.
- `event_gate`: holds the runner's event batches until the test opens it, so a
  test can load a page first and then watch the agent's events arrive live,
  without racing the runner and without sleeping.

Everything the sandboxed runner needs reaches it through AGENTLOOP_PUBLIC_URL,
which `app_url` points at the daphne port.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest

from tests.conftest import PASSWORD

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # CI runs as root, where Chromium's own sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
# `make screenshots` points this at docs/screenshots/ (the committed copies reviewers
# read); an ordinary test run writes under var/ so it leaves the work tree clean.
SCREENSHOTS = Path(
    os.environ.get(
        "AGENTLOOP_SCREENSHOT_DIR",
        Path(__file__).resolve().parent.parent / "var" / "screenshots",
    )
)
MAX_SCREENSHOT_BYTES = 300_000
GATE_SECONDS = 60  # the runner's HTTP client gives up after 30 s and retries


@pytest.fixture
def browser(app_url):
    """Chromium for one test. Not session-wide: Playwright's sync API keeps an
    event loop running in this thread while it is started, which the database
    setup and teardown around other tests (and pytest-asyncio) must not see."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("chromium is not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    # While it runs, Django's async-safety check mistakes the test's own ORM
    # calls for async code.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
            yield browser
            browser.close()
    finally:
        if previous is None:
            del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def sandbox_root(settings):
    # Not pytest's tmp_path (0700): the sandbox uid must traverse to the run dir.
    root = Path(tempfile.mkdtemp(prefix="agentloop-browser-", dir="/tmp"))
    root.chmod(0o711)
    settings.SANDBOX_ROOT = root
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def app_url(transactional_db, settings, sandbox_root) -> str:
    """The base URL of daphne serving the app, reachable from a local sandbox."""
    if not os.access("/usr/bin/bwrap", os.X_OK):
        pytest.skip("bubblewrap is not installed")
    from tests.gateway_server import start_daphne

    url = start_daphne()
    settings.AGENTLOOP_PUBLIC_URL = url
    settings.SANDBOX_PROVIDER_DEFAULT = "local"
    return url


class EventGate:
    """Holds every runner event batch until `open()`; the runner simply waits on its POST."""

    def __init__(self):
        self._open = threading.Event()
        self.held = threading.Event()  # set once a batch has arrived and waits

    def open(self) -> None:
        self._open.set()

    def wait(self) -> None:
        self.held.set()
        if not self._open.wait(GATE_SECONDS):
            raise RuntimeError("the browser test never opened the event gate")


@pytest.fixture
def event_gate(monkeypatch):
    from agentloop.runs import recording

    gate = EventGate()
    original = recording.record_events

    def gated(run, events, secrets):
        gate.wait()
        return original(run, events, secrets)

    monkeypatch.setattr(recording, "record_events", gated)
    yield gate
    gate.open()  # never leave a runner hanging on a failed test


class Browsing:
    """Pages for the test, each in its own browser context (its own cookies)."""

    def __init__(self, browser, base_url: str):
        self.browser = browser
        self.base_url = base_url
        self.contexts = []

    def new_page(self):
        context = self.browser.new_context(viewport=VIEWPORT, base_url=self.base_url)
        context.set_default_timeout(15_000)
        self.contexts.append(context)
        return context.new_page()

    def logged_in(self, user):
        """A new page, logged in through the login page as a person would."""
        from playwright.sync_api import expect

        page = self.new_page()
        page.goto("/login/")
        page.get_by_label("Username").fill(user.username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.locator(".whoami")).to_contain_text(user.username)
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def browsing(browser, app_url):
    browsing = Browsing(browser, app_url)
    yield browsing
    browsing.close()


def screenshot(page, name: str) -> Path:
    """Save the visible viewport to SCREENSHOTS/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    size = path.stat().st_size
    assert size < MAX_SCREENSHOT_BYTES, f"{path.name} is {size} bytes"
    return path


@pytest.fixture
def take_screenshot():
    """take_screenshot(page, name): SCREENSHOTS/<name>.png, checked < 300 KB."""
    return screenshot
