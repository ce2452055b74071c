"""Side by side: one task on several harnesses/models as a group, compared on a page and by the API.

Runs start on the fake sandbox provider (tests/fake_sandbox.py): what is under
test is the group, its checks, its access and what the comparison shows; the
harnesses themselves run for real in tests/test_e2e_harnesses.py.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from agentloop.comparisons.models import RunGroup
from agentloop.runs.models import Artifact, Run, RunStatus

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.fake_sandbox"]  # fake_provider

VARIANTS = [
    {"harness": "codex", "model": "gpt-5", "sandbox": "fake"},
    {"harness": "gemini", "model": "gemini-2.5-flash", "sandbox": "fake"},
]


@pytest.fixture
def deployable(settings, tmp_path, fake_provider):
    """Codex and Gemini CLIs installed, OpenAI and Gemini keys set; no Anthropic key."""
    bin_dir = tmp_path / "node_modules" / ".bin"
    bin_dir.mkdir(parents=True)
    for name in ("codex", "gemini"):
        (bin_dir / name).write_text("#!/bin/sh\n")
    settings.HARNESS_CLI_DIR = tmp_path
    settings.SANDBOX_PROVIDER_DEFAULT = "local"
    settings.AGENTLOOP_OPENAI_API_KEY = "sk-real"
    settings.AGENTLOOP_GEMINI_API_KEY = "AIza-real"
    settings.AGENTLOOP_ANTHROPIC_API_KEY = ""


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def start(user, project, variants=VARIANTS, prompt="Why do refunds fail?"):
    body = {"project": project.pk, "prompt": prompt, "variants": variants}
    return api(user).post("/api/v1/run-groups/", body, format="json")


def test_a_group_starts_one_run_per_variant_with_the_same_task(deployable, project, bob):
    response = start(bob, project)

    assert response.status_code == 201, response.content
    group = RunGroup.objects.get()
    runs = list(group.runs.order_by("pk"))
    assert [(r.config["harness"], r.config["model"]) for r in runs] == [
        ("codex", "gpt-5"),
        ("gemini", "gemini-2.5-flash"),
    ]
    assert [r.config["llm_provider"] for r in runs] == ["openai", "gemini"]
    assert {r.prompt for r in runs} == {"Why do refunds fail?"}
    assert [row["run"] for row in response.json()["runs"]] == [str(r.code) for r in runs]


def test_the_comparison_shows_outcome_duration_tokens_cost_and_artifacts_side_by_side(
    deployable, project, bob, client_for
):
    start(bob, project)
    group = RunGroup.objects.get()
    codex, gemini = group.runs.order_by("pk")
    begun = timezone.now() - timedelta(minutes=5)
    Run.objects.filter(pk=codex.pk).update(
        status=RunStatus.SUCCEEDED, started_at=begun, finished_at=begun + timedelta(seconds=42),
        input_tokens=1200, output_tokens=340, cost_usd=Decimal("0.0049"),
    )  # fmt: skip
    Run.objects.filter(pk=gemini.pk).update(
        status=RunStatus.FAILED, exit_reason="budget", started_at=begun,
        finished_at=begun + timedelta(seconds=7), input_tokens=900, output_tokens=12,
    )  # fmt: skip
    Artifact.objects.create(run=codex, key="a", kind="investigation", name="investigation.md")

    page = client_for(bob).get(reverse("compare-detail", args=[group.pk])).content.decode()

    assert "Why do refunds fail?" in page
    codex_row = page[page.index(f'data-run="{codex.code}"') :].split("</tr>")[0]
    gemini_row = page[page.index(f'data-run="{gemini.code}"') :].split("</tr>")[0]
    assert "codex · gpt-5" in codex_row and "succeeded" in codex_row
    assert "42.0 s" in codex_row and "1200 / 340" in codex_row and "$0.004900" in codex_row
    assert "investigation.md" in codex_row
    assert "gemini · gemini-2.5-flash" in gemini_row and "failed" in gemini_row
    assert "budget" in gemini_row and "7.0 s" in gemini_row and "none" in gemini_row

    answer = api(bob).get(f"/api/v1/run-groups/{group.pk}/").json()
    assert [r["status"] for r in answer["runs"]] == ["succeeded", "failed"]
    assert answer["runs"][0]["duration_seconds"] == 42.0
    assert answer["runs"][0]["total_tokens"] == 1540
    assert answer["runs"][0]["artifacts"] == [
        {"id": Artifact.objects.get().pk, "kind": "investigation", "name": "investigation.md"}
    ]
    assert answer["runs"][1]["exit_reason"] == "budget"


def test_the_page_form_starts_a_group(deployable, project, bob, client_for):
    body = {"project": project.pk, "prompt": "Compare us", "choices": ["harness:codex"],
            "more": "gemini gemini-2.5-pro"}  # fmt: skip
    response = client_for(bob).post(reverse("compare-new"), body)
    group = RunGroup.objects.get()
    assert response["Location"] == reverse("compare-detail", args=[group.pk])
    assert sorted(r.config["harness"] for r in group.runs.all()) == ["codex", "gemini"]


def test_an_unavailable_variant_starts_nothing_and_says_why(deployable, project, bob):
    variants = [*VARIANTS, {"harness": "claude-code", "sandbox": "fake"}]
    response = start(bob, project, variants)
    assert response.status_code == 400
    assert "variant 3: Claude Code is unavailable: no Anthropic key" in str(response.json())
    assert not Run.objects.exists() and not RunGroup.objects.exists()


@pytest.mark.parametrize(
    "variants, words",
    [
        ([VARIANTS[0]], "between 2 and 8"),
        ([VARIANTS[0], {"harness": "nope"}], "Unknown harness"),
        ([VARIANTS[0], {"harness": "codex", "llm_provider": "gemini"}], "speaks openai"),
        ([VARIANTS[0], "codex"], "must be an object"),
        ([VARIANTS[0], {"preset": "x"}], "preset must be an id"),
    ],
)
def test_bad_variants_are_a_400_with_a_clear_message(deployable, project, bob, variants, words):
    response = start(bob, project, variants)
    assert response.status_code == 400
    assert words in str(response.json())
    assert not Run.objects.exists()


def test_a_body_without_a_project_is_a_400(deployable, bob):
    response = api(bob).post("/api/v1/run-groups/", {"variants": VARIANTS}, format="json")
    assert response.status_code == 400 and "project" in response.json()


@pytest.mark.parametrize(
    "role, status", [("owner", 201), ("member", 201), ("viewer", 403), ("outsider", 404)]
)
def test_who_may_start_a_group(deployable, project, users, role, status):
    response = start(users[role], project)
    assert response.status_code == status
    assert RunGroup.objects.count() == (1 if status == 201 else 0)


@pytest.mark.parametrize(
    "role, status", [("owner", 200), ("member", 200), ("viewer", 200), ("outsider", 404)]
)
def test_who_may_see_a_group(deployable, project, users, client_for, role, status):
    start(users["member"], project)
    group = RunGroup.objects.get()
    assert api(users[role]).get(f"/api/v1/run-groups/{group.pk}/").status_code == status
    page = client_for(users[role]).get(reverse("compare-detail", args=[group.pk]))
    assert page.status_code == status
    if status == 404:
        assert "Why do refunds fail?" not in page.content.decode()


def test_an_anonymous_caller_is_refused(deployable, project):
    response = APIClient().post("/api/v1/run-groups/", {"project": project.pk}, format="json")
    assert response.status_code in (401, 403)
