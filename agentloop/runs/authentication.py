"""DRF authentication by a run's service key (`Authorization: Bearer al_sk_…`).

The key becomes a KeyPrincipal bound to the run's project with the key's
scopes, so the span API lets a runner read its own project and nothing else.
"""

from __future__ import annotations

from rest_framework import authentication, exceptions

from agentloop.runs.models import ServiceKey
from agentloop.teams.authentication import bearer_token
from agentloop.teams.principals import KeyPrincipal


def principal_for_service_key(key: ServiceKey) -> KeyPrincipal:
    return KeyPrincipal(
        project_id=key.project_id,
        space_id=key.project.space_id,
        scopes=frozenset(key.scopes),
        label=f"run {key.run.code}",
        key=key,
    )


class ServiceKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        raw = bearer_token(request)
        if raw is None or not raw.startswith(ServiceKey.PREFIX):
            return None  # not ours: let another authenticator try
        key = ServiceKey.authenticate(raw)
        if key is None:
            raise exceptions.AuthenticationFailed("Unknown, expired or revoked service key.")
        return principal_for_service_key(key), key

    def authenticate_header(self, request):
        return 'Bearer realm="agentloop"'
