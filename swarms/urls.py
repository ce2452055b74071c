"""Agent Swarms, mounted at `swarms/`."""

from __future__ import annotations

from django.urls import path

from swarms import views

urlpatterns = [
    path("", views.run_list, name="swarms-runs"),
    path("map/", views.swarm_map, name="swarms-map"),
    path("cancel/", views.bulk_cancel, name="swarms-cancel"),
    path("runs/<str:code>/", views.run_detail, name="swarms-run"),
    path("runs/<str:code>/traces/", views.run_traces, name="swarms-run-traces"),
]
