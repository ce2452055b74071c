"""GitHub: a personal access token or a GitHub App installation token as GH_TOKEN."""

from __future__ import annotations

import re

from agentloop.skills.kinds.base import Field, SkillKind, check_choices

TOKEN = re.compile(r"^[A-Za-z0-9_]{20,255}$")


class GitHub(SkillKind):
    def clean(self, config, secrets):
        errors: dict[str, str] = {}
        check_choices(self, config, errors)
        token = secrets.get("token", "")
        if token and not TOKEN.match(token):
            errors["token"] = (
                "A GitHub token is 20 to 255 letters, digits or underscores "
                "(ghp_…, github_pat_…, ghs_…)."
            )
        return errors

    def env(self, config, secrets):
        return {"GH_TOKEN": secrets["token"]}


KIND = GitHub(
    key="github",
    label="GitHub",
    description="Lets the agent use git and the gh CLI with a token (GH_TOKEN).",
    fields=(
        Field(
            "token_type",
            "Token type",
            choices=(("personal", "Personal access token"), ("app", "GitHub App token")),
            default="personal",
        ),
        Field("token", "Token", secret=True, help="Set as GH_TOKEN in the sandbox."),
    ),
)
