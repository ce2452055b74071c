"""Phoenix's REST paths (agentloop/api/phoenix.py), mounted at the site's root:
Phoenix's client joins `v1/…` to the base URL it is given."""

from __future__ import annotations

from django.urls import path

from agentloop.api import phoenix

urlpatterns = [
    path("arize_phoenix_version", phoenix.PhoenixVersionView.as_view(), name="phoenix-version"),
    path("v1/projects", phoenix.PhoenixProjectListView.as_view(), name="phoenix-projects"),
    path(
        "v1/projects/<str:identifier>",
        phoenix.PhoenixProjectView.as_view(),
        name="phoenix-project",
    ),
    path(
        "v1/projects/<str:identifier>/spans",
        phoenix.PhoenixSpanListView.as_view(),
        name="phoenix-spans",
    ),
    path(
        "v1/projects/<str:identifier>/span_annotations",
        phoenix.PhoenixSpanAnnotationListView.as_view(),
        name="phoenix-span-annotations",
    ),
    path(
        "v1/span_annotations",
        phoenix.PhoenixSpanAnnotationWriteView.as_view(),
        name="phoenix-annotate-spans",
    ),
    path("v1/spans", phoenix.PhoenixSpanQueryView.as_view(), name="phoenix-span-query"),
]
