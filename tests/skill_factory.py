"""Skills for tests, made through the same action the pages use."""

from __future__ import annotations

from agentloop.skills import actions

GH_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"  # 40 characters, like a real one
DD_API = "0123456789abcdef0123456789abcdef"
DD_APP = "fedcba9876543210fedcba9876543210fedcba98"


def github_skill(space, user, name="GitHub", token=GH_TOKEN, token_type="personal"):
    return actions.create_skill(
        user, space.pk, "github", name, {"token_type": token_type}, {"token": token}
    )


def datadog_skill(space, user, name="Datadog", api=DD_API, app=DD_APP, site="datadoghq.eu"):
    return actions.create_skill(
        user, space.pk, "datadog", name, {"site": site}, {"api_key": api, "app_key": app}
    )


def custom_skill(space, user, name, repo_url, ref="main", env=None):
    secrets = {f"env.{k}": v for k, v in (env or {}).items()}
    return actions.create_skill(
        user, space.pk, "custom", name, {"repo_url": repo_url, "ref": ref}, secrets
    )
