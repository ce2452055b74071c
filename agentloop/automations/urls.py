"""Automations pages, mounted at automations/."""

from __future__ import annotations

from django.urls import path

from agentloop.automations import views

urlpatterns = [
    path("", views.automation_list, name="automation-list"),
    path("space/<int:space_id>/new/", views.automation_create, name="automation-create"),
    path("<int:automation_id>/", views.automation_detail, name="automation-detail"),
    path("<int:automation_id>/edit/", views.automation_edit, name="automation-edit"),
    path("<int:automation_id>/pause/", views.automation_pause, name="automation-pause"),
    path("<int:automation_id>/resume/", views.automation_resume, name="automation-resume"),
    path("<int:automation_id>/run/", views.automation_run_now, name="automation-run-now"),
    path("<int:automation_id>/delete/", views.automation_delete, name="automation-delete"),
]
