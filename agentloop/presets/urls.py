"""Agent Presets pages, mounted at studio/presets/."""

from __future__ import annotations

from django.urls import path

from agentloop.presets import views

urlpatterns = [
    path("", views.preset_list, name="preset-list"),
    path("space/<int:space_id>/new/", views.preset_create, name="preset-create"),
    path("<int:preset_id>/", views.preset_detail, name="preset-detail"),
    path("<int:preset_id>/edit/", views.preset_edit, name="preset-edit"),
    path("<int:preset_id>/duplicate/", views.preset_duplicate, name="preset-duplicate"),
    path("<int:preset_id>/delete/", views.preset_delete, name="preset-delete"),
]
