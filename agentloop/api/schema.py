"""OpenAPI descriptions of our key authenticators (drf-spectacular extensions).

Imported by agentloop.api.views so they are registered before a schema is built.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ProjectApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "agentloop.teams.authentication.ProjectApiKeyAuthentication"
    name = "projectApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A project API key, `Authorization: Bearer al_pk_…` "
            "(or an `api_key` header). Reads and annotates its own project only.",
        }


class ServiceKeyScheme(OpenApiAuthenticationExtension):
    target_class = "agentloop.runs.authentication.ServiceKeyAuthentication"
    name = "serviceKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A run's service key, `Authorization: Bearer al_sk_…`. "
            "Scoped to the run's bound project; expires with the run.",
        }


class PersonalTokenScheme(OpenApiAuthenticationExtension):
    target_class = "agentloop.teams.authentication.PersonalTokenAuthentication"
    name = "personalToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A person's API token, `Authorization: Bearer al_pt_…` (Settings → "
            "API tokens). Acts with its owner's roles, optionally only in some spaces.",
        }
