"""REST API v1 (docs/api.md), mounted at /api/v1/."""

from __future__ import annotations

from django.urls import path

from agentloop.api import automations, presets, review, sessions, signal, views

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
    # Sessions (runs).
    path("sessions/", sessions.SessionListView.as_view(), name="api-sessions"),
    path("sessions/<str:code>/", sessions.SessionDetailView.as_view(), name="api-session"),
    path(
        "sessions/<str:code>/events",
        sessions.SessionEventsView.as_view(),
        name="api-session-events",
    ),
    # Served by agentloop/api/stream_app.py under daphne; this view answers elsewhere.
    path(
        "sessions/<str:code>/stream",
        sessions.SessionStreamView.as_view(),
        name="api-session-stream",
    ),
    path(
        "sessions/<str:code>/messages",
        sessions.SessionMessageView.as_view(),
        name="api-session-messages",
    ),
    path("sessions/<str:code>/stop", sessions.SessionStopView.as_view(), name="api-session-stop"),
    path(
        "sessions/<str:code>/artifacts",
        sessions.SessionArtifactsView.as_view(),
        name="api-session-artifacts",
    ),
    path(
        "sessions/<str:code>/artifacts/<int:artifact_id>/content",
        sessions.SessionArtifactContentView.as_view(),
        name="api-session-artifact-content",
    ),
    # Presets and skills.
    path("presets/", presets.PresetListView.as_view(), name="api-presets"),
    path("presets/<int:preset_id>/", presets.PresetDetailView.as_view(), name="api-preset"),
    path(
        "presets/<int:preset_id>/duplicate",
        presets.PresetDuplicateView.as_view(),
        name="api-preset-duplicate",
    ),
    path("skills/", presets.SkillListView.as_view(), name="api-skills"),
    path("skills/<int:skill_id>/", presets.SkillDetailView.as_view(), name="api-skill"),
    # Automations.
    path("automations/", automations.AutomationListView.as_view(), name="api-automations"),
    path(
        "automations/<int:automation_id>/",
        automations.AutomationDetailView.as_view(),
        name="api-automation",
    ),
    path(
        "automations/<int:automation_id>/pause",
        automations.AutomationPauseView.as_view(),
        name="api-automation-pause",
    ),
    path(
        "automations/<int:automation_id>/resume",
        automations.AutomationResumeView.as_view(),
        name="api-automation-resume",
    ),
    path(
        "automations/<int:automation_id>/trigger",
        automations.AutomationTriggerView.as_view(),
        name="api-automation-trigger",
    ),
    # Signal.
    path("signal/projects/", signal.SignalProjectsView.as_view(), name="api-signal-projects"),
    path("projects/<int:project_id>/signal", signal.SignalStatusView.as_view(), name="api-signal"),
    path(
        "projects/<int:project_id>/signal/enable",
        signal.SignalEnableView.as_view(),
        name="api-signal-enable",
    ),
    path(
        "projects/<int:project_id>/signal/disable",
        signal.SignalDisableView.as_view(),
        name="api-signal-disable",
    ),
    path(
        "projects/<int:project_id>/signal/run",
        signal.SignalRunView.as_view(),
        name="api-signal-run",
    ),
    path(
        "projects/<int:project_id>/signal/issues",
        signal.SignalIssueListView.as_view(),
        name="api-signal-issues",
    ),
    path(
        "projects/<int:project_id>/signal/issues/<int:issue_id>",
        signal.SignalIssueDetailView.as_view(),
        name="api-signal-issue",
    ),
    # Review.
    path("review/", review.ReviewQueueView.as_view(), name="api-review"),
    path(
        "review/<int:artifact_id>/approve",
        review.ReviewApproveView.as_view(),
        name="api-review-approve",
    ),
    path(
        "review/<int:artifact_id>/reject",
        review.ReviewRejectView.as_view(),
        name="api-review-reject",
    ),
]
