"""Traces API: an agentloop API key with broader access than the run's own scoped key.

The run's service key reads only the project the run is bound to; this key can
be one that reaches several projects of the space (or another deployment).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings

from agentloop.skills.kinds.base import Field, SkillKind


class TracesApi(SkillKind):
    def clean(self, config, secrets):
        errors: dict[str, str] = {}
        url = config.get("base_url", "")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            errors["base_url"] = "The base URL must start with http:// or https://."
        key = secrets.get("api_key", "")
        if key and (len(key) < 16 or any(c.isspace() for c in key)):
            errors["api_key"] = "An API key is at least 16 characters without spaces."
        return errors

    def initial(self):
        # The default is this deployment's own API.
        return {"base_url": f"{settings.AGENTLOOP_PUBLIC_URL.rstrip('/')}/api/v1/"}

    def env(self, config, secrets):
        return {
            "AGENTLOOP_TRACES_API_KEY": secrets["api_key"],
            "AGENTLOOP_TRACES_API_URL": config["base_url"].rstrip("/"),
        }


KIND = TracesApi(
    key="traces_api",
    label="Traces API",
    description=(
        "An agentloop API key (AGENTLOOP_TRACES_API_KEY) for reading more than the run's "
        "own project, e.g. several projects of this space."
    ),
    fields=(
        Field(
            "base_url",
            "Base URL",
            help="Set as AGENTLOOP_TRACES_API_URL.",
        ),
        Field("api_key", "API key", secret=True),
    ),
)
