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


def test_a_run_with_a_repository_reaches_the_git_host_through_the_egress_proxy():
    with_repo, _ = normalize_config({"repository": {"url": "https://github.com/acme/shop"}})
    without, _ = normalize_config({})
    listed, _ = normalize_config(
        {"repository": {"url": "https://github.com/acme/shop"},
         "egress_hosts": "pypi.org\n*.pythonhosted.org, GitHub.com"}
    )  # fmt: skip
    trusted, _ = normalize_config({"network": "open"})

    assert (with_repo["network"], with_repo["egress_hosts"]) == ("runner-only", ["github.com"])
    assert (without["network"], without["egress_hosts"]) == ("runner-only", [])
    assert listed["egress_hosts"] == ["pypi.org", "*.pythonhosted.org", "github.com"]
    assert trusted["network"] == "open"  # only when asked for


def test_a_bad_egress_host_names_the_field():
    errors = errors_of({"egress_hosts": ["github.com", "not a host"]})
    assert "'not a host' is not a host name" in errors["egress_hosts"][0]


@pytest.mark.parametrize(
    "config,field,message",
    [
        ({"harness": "gpt-engineer"}, "harness", "Unknown harness 'gpt-engineer'; choose one of"),
        ({"max_turns": "many"}, "max_turns", "max_turns must be a whole number."),
        ({"time_limit_seconds": 0}, "time_limit_seconds", "must be between 1 and 86400."),
        ({"limits": {"cpu": "lots"}}, "limits.cpu", "limits.cpu must be a number; got 'lots'."),
        ({"limits": {"memory_mb": 0}}, "limits.memory_mb", "limits.memory_mb must be > 0; got 0."),
        ({"limits": [1]}, "limits", "limits must be an object."),
        ({"env": {"bad-name": "x"}}, "env", "env has names that are not allowed: bad-name."),
        ({"secret_env": {"AGENTLOOP_RUN_TOKEN": "x"}}, "secret_env", "AGENTLOOP_RUN_TOKEN."),
        ({"allowed_tools": ["Read", 3]}, "allowed_tools", "must be a list of tool names."),
        # A policy the sandboxes do not know used to fail only at launch.
        ({"network": "everywhere"}, "network", "must be one of open, runner-only"),
        ({"preset_id": "seven"}, "preset_id", "preset_id must be a whole number"),
        ({"cost_budget_usd": "100000.01"}, "cost_budget_usd", "at most 100000."),
    ],
)
def test_each_bad_value_gets_a_message_naming_it(config, field, message):
    errors = errors_of(config)

    assert message in errors[field][0]


def test_every_bad_field_is_reported_at_once():
    errors = errors_of({"max_turns": 0, "repository": {"url": "ftp://x"}, "skills": "x"})

    assert set(errors) == {"max_turns", "repository.url", "skills"}


def test_a_snapshot_validates_again_to_itself():
    # Stored snapshots (and configs built from them) must still pass the schema.
    snapshot, secret_env = normalize_config(
        {
            "harness": "claude-code",
            "sandbox": "local",
            "allowed_tools": ["Read"],
            "limits": {"cpu": 0.5, "memory_mb": "512"},
            "env": {"REGION": "eu"},
            "secret_env": {"DD_KEY": "s3cret"},
            "repository": {"url": "https://github.com/acme/shop"},
            "token_budget": 1000,
            "cost_budget_usd": 1.25,
            "preset_id": 3,
            "preset_name": "Fixer",
        }
    )

    again, again_secret = normalize_config({**snapshot, "secret_env": secret_env})

    assert again == snapshot and again_secret == secret_env == {"DD_KEY": "s3cret"}
    assert snapshot["limits"] == {"cpu": 0.5, "memory_mb": 512}
