"""Settings → API tokens: a person's own tokens (mounted at /settings/tokens/)."""

from __future__ import annotations

from django.urls import path

from agentloop.teams import token_views

urlpatterns = [
    path("", token_views.token_list, name="personal-tokens"),
    path("new/", token_views.token_create, name="personal-token-create"),
    path("<int:token_id>/revoke/", token_views.token_revoke, name="personal-token-revoke"),
]
