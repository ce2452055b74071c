"""DRF authentication by project API key (`Authorization: Bearer al_pk_…` or `api_key`)."""

from __future__ import annotations

from rest_framework import authentication, exceptions

from agentloop.teams.models import ProjectApiKey
from agentloop.teams.principals import KeyPrincipal

PROJECT_KEY_SCOPES = frozenset({"traces:read", "traces:write", "annotations:write"})


def bearer_token(request) -> str | None:
    """The raw key from `Authorization: Bearer …` or an `api_key` header."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.META.get("HTTP_API_KEY") or None


def principal_for_project_key(key: ProjectApiKey) -> KeyPrincipal:
    return KeyPrincipal(
        project_id=key.project_id,
        space_id=key.project.space_id,
        scopes=PROJECT_KEY_SCOPES,
        label=f"project key {key.name}",
        key=key,
        space_wide=True,
    )


class ProjectApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        raw = bearer_token(request)
        if raw is None or not raw.startswith(ProjectApiKey.PREFIX):
            return None  # not ours: let another authenticator try
        key = ProjectApiKey.authenticate(raw)
        if key is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked API key.")
        return principal_for_project_key(key), key

    def authenticate_header(self, request):
        return 'Bearer realm="agentloop"'
