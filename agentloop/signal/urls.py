"""The Signal tab of a project, mounted at projects/<project_id>/signal/."""

from __future__ import annotations

from django.urls import path

from agentloop.signal import views

urlpatterns = [
    path("", views.signal_tab, name="signal-tab"),
    path("enable/", views.signal_enable, name="signal-enable"),
    path("run/", views.signal_run_now, name="signal-run-now"),
    path(
        "issues/<int:issue_id>/investigate/",
        views.issue_investigate,
        name="signal-issue-investigate",
    ),
    path(
        "issues/<int:issue_id>/propose-fix/",
        views.issue_propose_fix,
        name="signal-issue-propose-fix",
    ),
    path("disable/", views.signal_disable, name="signal-disable"),
    path("harness/", views.signal_harness, name="signal-harness"),
    path("repository/", views.signal_repository, name="signal-repository"),
    path("repository/detach/", views.signal_repository_detach, name="signal-repository-detach"),
]
