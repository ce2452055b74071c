"""A harness whose CLI is missing or whose provider has no key is offered as unavailable, with why.

Today's behaviour before this: Claude Code was offered without a key and its
run failed with the gateway's 503. Now the session form shows the option
disabled with what is missing and how to configure it, and refuses to start
such a session; the preset form labels it the same way.
"""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from agentloop.runs.availability import availability
from agentloop.runs.models import Run

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.fake_sandbox"]  # fake_provider


@pytest.fixture
def cli_dir(tmp_path, settings):
    """A harness CLI folder with codex and gemini installed, opencode not."""
    bin_dir = tmp_path / "node_modules" / ".bin"
    bin_dir.mkdir(parents=True)
    for name in ("codex", "gemini"):
        (bin_dir / name).write_text("#!/bin/sh\n")
    settings.HARNESS_CLI_DIR = tmp_path
    settings.SANDBOX_PROVIDER_DEFAULT = "local"
    return tmp_path


def option(page: str, value: str) -> str:
    found = re.search(rf'<option value="{value}"[^>]*>[^<]*</option>', page)
    assert found, f"no option {value}"
    return found.group(0)


def test_without_keys_the_model_harnesses_are_shown_unavailable_with_the_setting_to_set(
    settings, cli_dir, client_for, bob, project
):
    settings.AGENTLOOP_ANTHROPIC_API_KEY = ""
    settings.AGENTLOOP_OPENAI_API_KEY = ""
    settings.AGENTLOOP_GEMINI_API_KEY = ""

    page = client_for(bob).get(reverse("studio-new-session")).content.decode()

    codex = option(page, "codex")
    assert "disabled" in codex
    assert (
        "Codex — unavailable: no OpenAI key (set AGENTLOOP_OPENAI_API_KEY on the web process)"
        in codex
    )
    assert "no Gemini key (set AGENTLOOP_GEMINI_API_KEY" in option(page, "gemini")
    assert "no Anthropic key (set AGENTLOOP_ANTHROPIC_API_KEY" in option(page, "claude-code")
    # A missing CLI and a missing key are both said.
    opencode = option(page, "opencode")
    assert "the opencode CLI is not installed (run `make harness-cli`" in opencode
    assert "no OpenAI key" in opencode
    analyst = option(page, "analyst")
    assert "disabled" not in analyst and "unavailable" not in analyst


def test_with_the_key_and_the_cli_a_harness_is_offered(settings, cli_dir, client_for, bob, project):
    settings.AGENTLOOP_OPENAI_API_KEY = "sk-real"
    page = client_for(bob).get(reverse("studio-new-session")).content.decode()
    assert option(page, "codex") == '<option value="codex">Codex</option>'
    assert "unavailable" in option(page, "opencode")  # its CLI is still missing
    assert availability("codex").available
    assert not availability("opencode").available


def test_a_session_on_an_unavailable_harness_is_refused_with_the_reason(
    settings, cli_dir, client_for, bob, project, fake_provider
):
    settings.AGENTLOOP_GEMINI_API_KEY = ""
    body = {"project": project.pk, "preset": "", "prompt": "Go", "harness": "gemini",
            "sandbox": "fake", "model": ""}  # fmt: skip

    response = client_for(bob).post(reverse("studio-new-session"), body)

    assert response.status_code == 200
    assert "Gemini CLI is unavailable: no Gemini key (set AGENTLOOP_GEMINI_API_KEY" in (
        response.content.decode()
    )
    assert not Run.objects.exists()


def test_opencode_on_anthropic_needs_the_anthropic_key_not_the_openai_one(settings, cli_dir):
    (cli_dir / "node_modules" / ".bin" / "opencode").write_text("#!/bin/sh\n")
    settings.AGENTLOOP_OPENAI_API_KEY = ""
    settings.AGENTLOOP_ANTHROPIC_API_KEY = "sk-ant-real"
    assert availability("opencode", "anthropic").available
    assert "no OpenAI key" in availability("opencode", "openai").reason


def test_the_preset_form_labels_unavailable_harnesses_too(
    settings, cli_dir, client_for, alice, project
):
    settings.AGENTLOOP_OPENAI_API_KEY = ""
    url = reverse("preset-create", args=[project.space.pk])
    page = client_for(alice).get(url).content.decode()
    assert "Codex — unavailable: no OpenAI key" in option(page, "codex")
    assert 'value="openai"' in page  # the provider choice
