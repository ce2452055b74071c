"""DRF authentication by project API key (`Authorization: Bearer al_pk_…` or `api_key`)
and by a person's token (`Authorization: Bearer al_pt_…`)."""

from __future__ import annotations

from rest_framework import authentication, exceptions

from agentloop.teams.models import PersonalToken, ProjectApiKey
from agentloop.teams.principals import KeyPrincipal

PROJECT_KEY_SCOPES = frozenset({"traces:read", "traces:write", "annotations:write"})


def bearer_token(request) -> str | None:
    """The raw key from `Authorization: Bearer …` or an `api_key` header."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.META.get("HTTP_API_KEY") or None


def principal_for_project_key(project) -> KeyPrincipal:
    """The caller of a key that ProjectApiKey.project_for_token opened `project` with."""
    return KeyPrincipal(
        project_id=project.pk,
        space_id=project.space_id,
        scopes=PROJECT_KEY_SCOPES,
        label=f"project key {project.api_key_name}",
        space_wide=True,
        project=project,
    )


class ProjectApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        raw = bearer_token(request)
        if raw is None or not raw.startswith(ProjectApiKey.PREFIX):
            return None  # not ours: let another authenticator try
        # The precompiled lookup OTLP ingest uses: the ORM query with its join
        # was a sixth of a Phoenix client's span read (docs/benchmarks.md).
        project = ProjectApiKey.project_for_token(raw)
        if project is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked API key.")
        return principal_for_project_key(project), None

    def authenticate_header(self, request):
        return 'Bearer realm="agentloop"'


def user_for_personal_token(raw: str | None):
    """(user, token) for a usable personal token, else None. The user carries the
    token's space limit for the access helpers (`limited_to_spaces`)."""
    token = PersonalToken.authenticate(raw) if raw else None
    if token is None:
        return None
    user = token.user
    user.limited_to_spaces = token.space_ids()
    return user, token


class PersonalTokenAuthentication(authentication.BaseAuthentication):
    """A person's token: acts as its owner, with the owner's roles (no CSRF: not a cookie)."""

    def authenticate(self, request):
        raw = bearer_token(request)
        if raw is None or not raw.startswith(PersonalToken.PREFIX):
            return None  # not ours: let another authenticator try
        found = user_for_personal_token(raw)
        if found is None:
            raise exceptions.AuthenticationFailed(
                "Unknown, expired or revoked token. Create a new one under Settings → API tokens."
            )
        return found

    def authenticate_header(self, request):
        return 'Bearer realm="agentloop"'
