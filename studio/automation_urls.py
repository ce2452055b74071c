"""Automations, the review queue and the Signal tab, mounted at studio/automations/."""

from __future__ import annotations

from django.urls import path

from studio import automation_views as views

urlpatterns = [
    path("", views.automation_list, name="automation-list"),
    path("space/<int:space_id>/new/", views.automation_create, name="automation-create"),
    path("<int:automation_id>/", views.automation_detail, name="automation-detail"),
    path("<int:automation_id>/edit/", views.automation_edit, name="automation-edit"),
    path("<int:automation_id>/pause/", views.automation_pause, name="automation-pause"),
    path("<int:automation_id>/resume/", views.automation_resume, name="automation-resume"),
    path("<int:automation_id>/run/", views.automation_run_now, name="automation-run-now"),
    path("<int:automation_id>/delete/", views.automation_delete, name="automation-delete"),
    path("review/", views.review_queue, name="review-queue"),
    path("review/<int:artifact_id>/", views.artifact_review, name="artifact-review"),
    path(
        "review/<int:artifact_id>/approve/",
        views.artifact_decide,
        {"decision": "approve"},
        name="artifact-approve",
    ),
    path(
        "review/<int:artifact_id>/reject/",
        views.artifact_decide,
        {"decision": "reject"},
        name="artifact-reject",
    ),
    path("signal/<int:project_id>/", views.signal_tab, name="signal-tab"),
    path("signal/<int:project_id>/enable/", views.signal_enable, name="signal-enable"),
    path("signal/<int:project_id>/disable/", views.signal_disable, name="signal-disable"),
    path("signal/<int:project_id>/harness/", views.signal_harness, name="signal-harness"),
    path("signal/<int:project_id>/repository/", views.signal_repository, name="signal-repository"),
    path(
        "signal/<int:project_id>/repository/detach/",
        views.signal_repository_detach,
        name="signal-repository-detach",
    ),
]
