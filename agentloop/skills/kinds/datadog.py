"""Datadog: API and application keys, and the site the account lives on."""

from __future__ import annotations

import re

from agentloop.skills.kinds.base import Field, SkillKind

SITE = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")
KEY = re.compile(r"^[A-Za-z0-9]{16,64}$")


class Datadog(SkillKind):
    def clean(self, config, secrets):
        errors: dict[str, str] = {}
        if not SITE.match(config.get("site", "")):
            errors["site"] = "The site is a host name such as datadoghq.com or datadoghq.eu."
        for name, label in (("api_key", "API key"), ("app_key", "application key")):
            value = secrets.get(name, "")
            if value and not KEY.match(value):
                errors[name] = f"A Datadog {label} is 16 to 64 letters and digits."
        return errors

    def env(self, config, secrets):
        return {
            "DD_API_KEY": secrets["api_key"],
            "DD_APP_KEY": secrets["app_key"],
            "DD_SITE": config.get("site") or "datadoghq.com",
        }


KIND = Datadog(
    key="datadog",
    label="Datadog",
    description="Datadog API access (DD_API_KEY, DD_APP_KEY, DD_SITE).",
    fields=(
        Field("site", "Site", default="datadoghq.com", help="Set as DD_SITE."),
        Field("api_key", "API key", secret=True),
        Field("app_key", "Application key", secret=True),
    ),
)
