"""normalize_config for what presets bring: budgets, a repository, a long system prompt."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings

from agentloop.runs.config import normalize_config


def errors_of(config) -> dict:
    with pytest.raises(ValidationError) as caught:
        normalize_config(config)
    return caught.value.message_dict


def test_budgets_and_repository_are_snapshotted():
    snapshot, _ = normalize_config(
        {
            "token_budget": "150000",
            "cost_budget_usd": "2.50",
            "repository": {"url": "https://github.com/acme/shop", "base_branch": "develop"},
        }
    )

    assert snapshot["token_budget"] == 150000
    assert snapshot["cost_budget_usd"] == 2.5
    assert snapshot["repository"] == {
        "url": "https://github.com/acme/shop",
        "base_branch": "develop",
    }


def test_no_budget_and_no_repository_mean_none():
    snapshot, _ = normalize_config({"token_budget": "", "repository": {}})

    assert (snapshot["token_budget"], snapshot["cost_budget_usd"], snapshot["repository"]) == (
        None,
        None,
        None,
    )


def test_the_base_branch_defaults_to_main():
    snapshot, _ = normalize_config({"repository": {"url": "https://github.com/acme/shop"}})

    assert snapshot["repository"]["base_branch"] == "main"


@pytest.mark.parametrize(
    "config,field",
    [
        ({"token_budget": 0}, "token_budget"),
        ({"token_budget": "lots"}, "token_budget"),
        ({"cost_budget_usd": "-1"}, "cost_budget_usd"),
        ({"cost_budget_usd": "NaN"}, "cost_budget_usd"),
        ({"cost_budget_usd": "ten"}, "cost_budget_usd"),
        ({"repository": "https://github.com/acme/shop"}, "repository"),
        ({"repository": {"url": "git@github.com:acme/shop.git"}}, "repository.url"),
        ({"repository": {"url": "https://tok@github.com/acme/shop"}}, "repository.url"),
        (
            {"repository": {"url": "https://github.com/a/b", "base_branch": "-f"}},
            "repository.base_branch",
        ),
        ({"system_prompt": "x" * 100_001}, "system_prompt"),
    ],
)
def test_bad_values_are_named(config, field):
    assert field in errors_of(config)


def test_file_repositories_only_when_allowed():
    config = {"repository": {"url": "file:///srv/shop.git"}}
    assert "repository.url" in errors_of(config)

    with override_settings(AGENTLOOP_ALLOW_FILE_REPOSITORIES=True):
        snapshot, _ = normalize_config(config)

    assert snapshot["repository"]["url"] == "file:///srv/shop.git"


def test_a_run_with_a_repository_may_reach_the_git_host():
    with_repo, _ = normalize_config({"repository": {"url": "https://github.com/acme/shop"}})
    without, _ = normalize_config({})
    pinned, _ = normalize_config(
        {"repository": {"url": "https://github.com/acme/shop"}, "network": "runner-only"}
    )

    assert (with_repo["network"], without["network"], pinned["network"]) == (
        "open",
        "runner-only",
        "runner-only",
    )
