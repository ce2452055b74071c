"""REST API v1 (docs/api.md), mounted at /api/v1/."""

from __future__ import annotations

from django.urls import path

from agentloop.api import views

urlpatterns = [
    path("projects/", views.ProjectListView.as_view(), name="api-projects"),
    path("projects/<int:project_id>/spans", views.SpanListView.as_view(), name="api-spans"),
    path(
        "projects/<int:project_id>/analytics",
        views.AnalyticsView.as_view(),
        name="api-analytics",
    ),
    path(
        "projects/<int:project_id>/traces/<str:trace_id>",
        views.TraceDetailView.as_view(),
        name="api-trace",
    ),
    path(
        "projects/<int:project_id>/annotations",
        views.AnnotationListView.as_view(),
        name="api-annotations",
    ),
]
