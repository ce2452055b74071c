from __future__ import annotations

from django.urls import path

from agentloop.teams import views

urlpatterns = [
    path("new/", views.space_create, name="space-create"),
    path("<int:space_id>/", views.space_detail, name="space-detail"),
    path("<int:space_id>/members/", views.member_invite, name="member-invite"),
    path(
        "<int:space_id>/members/<int:membership_id>/role/",
        views.member_role,
        name="member-role",
    ),
    path(
        "<int:space_id>/members/<int:membership_id>/remove/",
        views.member_remove,
        name="member-remove",
    ),
    path("<int:space_id>/projects/new/", views.project_create, name="project-create"),
    path(
        "<int:space_id>/unknown-projects/",
        views.space_unknown_projects,
        name="space-unknown-projects",
    ),
]
