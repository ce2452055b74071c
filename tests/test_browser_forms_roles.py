"""Forms and roles as people meet them, in a real browser (issue 15, points 9 and 10).

- A skill form with two mistakes says both at once; its secrets are password
  fields, kept (not shown) across the error, so fixing the mistakes saves them.
- A 100,500-character system prompt is refused with a message, not cut to
  100,000 by the browser; the preset a member then creates has "Start session".
- A member may create presets but not delete an admin's automation or turn
  Signal off: the pages offer neither (and the server refuses the delete).
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from agentloop.automations.actions import save_automation
from agentloop.automations.models import Automation
from agentloop.presets.models import AgentPreset
from agentloop.skills.models import Skill

pytest_plugins = ["tests.browser_support"]  # browsing

pytestmark = pytest.mark.slow

API_KEY = "a" * 32
APP_KEY = "b" * 40


def test_a_skill_form_reports_every_error_at_once_and_keeps_the_secrets(browsing, space, alice):
    page = browsing.logged_in(alice)
    page.goto(f"/skills/spaces/{space.pk}/new/datadog/")
    expect(page.get_by_label("API key")).to_have_attribute("type", "password")
    expect(page.get_by_label("Application key")).to_have_attribute("type", "password")
    page.get_by_label("Name").fill("Bad Name!")
    page.get_by_label("Site").fill("not a site!")
    page.get_by_label("API key").fill(API_KEY)
    page.get_by_label("Application key").fill(APP_KEY)
    page.get_by_role("button", name="Add skill").click()

    # Both mistakes, at once, in the one error style; the secrets are not echoed.
    expect(page.locator(".form-errors")).to_be_visible()
    expect(page.locator(".field.has-error")).to_have_count(2)
    expect(page.locator(".field.has-error", has=page.get_by_label("Site"))).to_contain_text(
        "host name"
    )
    expect(page.get_by_label("Name")).to_have_value("Bad Name!")
    expect(page.locator(".kept")).to_have_count(2)
    assert API_KEY not in page.content() and APP_KEY not in page.content()

    # Fixing the two fields is enough: the kept secrets are saved with them.
    page.get_by_label("Name").fill("datadog")
    page.get_by_label("Site").fill("datadoghq.eu")
    page.get_by_role("button", name="Add skill").click()
    expect(page).to_have_url(re.compile(rf"/skills/spaces/{space.pk}/$"))
    skill = Skill.objects.get(space=space, name="datadog")
    secrets = skill.secrets()
    assert (secrets["api_key"], secrets["app_key"]) == (API_KEY, APP_KEY)


def test_a_member_creates_a_preset_but_cannot_delete_an_admins_automation(
    browsing, project, alice, bob
):
    admins = AgentPreset.objects.create(space=project.space, name="Analyst", harness="analyst")
    automation = save_automation(
        alice,
        Automation(
            space=project.space,
            project=project,
            preset=admins,
            name="alice's nightly",
            prompt="Check errors.",
            trigger="cron",
            cron_expression="0 3 * * *",
        ),
    )
    page = browsing.logged_in(bob)

    # An over-long system prompt: refused with a message, what was typed kept.
    page.goto("/studio/presets/")
    page.get_by_role("link", name="New preset").click()
    page.get_by_label("Name").fill("bob's triage")
    page.get_by_label("System prompt").fill("y" * 100_500)
    page.get_by_role("button", name=re.compile("Create|Save")).click()
    expect(page.locator(".form-errors")).to_contain_text("100500")
    expect(page.get_by_label("Name")).to_have_value("bob's triage")
    assert len(page.get_by_label("System prompt").input_value()) == 100_500
    assert not AgentPreset.objects.filter(name="bob's triage").exists()

    page.get_by_label("System prompt").fill("Be careful.")
    page.get_by_role("button", name=re.compile("Create|Save")).click()
    preset = AgentPreset.objects.get(name="bob's triage")
    assert preset.created_by == bob
    expect(page.get_by_role("link", name="Start session")).to_be_visible()
    page.get_by_role("link", name="Start session").click()
    expect(page.get_by_label("Preset")).to_have_value(str(preset.pk))

    # Alice's automation: bob may run it, not delete it; the server agrees.
    page.goto(f"/automations/{automation.pk}/")
    expect(page.get_by_role("button", name="Run now")).to_be_visible()
    expect(page.get_by_role("button", name="Delete")).to_have_count(0)
    token = page.locator("input[name=csrfmiddlewaretoken]").first.input_value()
    refused = page.request.post(
        f"/automations/{automation.pk}/delete/",
        form={"csrfmiddlewaretoken": token},
        headers={"Referer": page.url},
    )
    assert refused.status == 403
    assert Automation.objects.filter(pk=automation.pk).exists()

    # Signal: a member turns it on; only an admin turns it off.
    page.goto(f"/projects/{project.pk}/signal/")
    page.get_by_role("button", name="Enable Signal").click()
    expect(page.get_by_role("button", name="Run now")).to_be_visible()
    expect(page.get_by_role("button", name="Disable Signal")).to_have_count(0)
