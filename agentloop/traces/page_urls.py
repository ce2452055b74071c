"""Project pages, mounted at `projects/<int:project_id>/`."""

from __future__ import annotations

from django.urls import path

from agentloop.teams import views as team_views
from agentloop.traces import views

urlpatterns = [
    path("traces/", views.explorer, name="traces-explorer"),
    path("traces/<str:trace_id>/", views.trace_detail, name="trace-detail"),
    path("spans/<str:span_id>/", views.span_detail, name="span-detail"),
    path("sessions/<str:session_id>/", views.session_detail, name="session-detail"),
    path("settings/", team_views.project_settings, name="project-settings"),
    path("settings/keys/", team_views.api_key_create, name="api-key-create"),
    path("settings/retention/", team_views.project_retention, name="project-retention"),
    path(
        "settings/keys/<int:key_id>/revoke/",
        team_views.api_key_revoke,
        name="api-key-revoke",
    ),
]
