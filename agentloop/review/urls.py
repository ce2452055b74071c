"""The review queue and artifact pages, mounted at review/."""

from __future__ import annotations

from django.urls import path

from agentloop.review import views

urlpatterns = [
    path("", views.review_queue, name="review-queue"),
    path("<int:artifact_id>/", views.artifact_review, name="artifact-review"),
    path("bulk/approve/", views.bulk_decide, {"decision": "approve"}, name="review-bulk-approve"),
    path("bulk/reject/", views.bulk_decide, {"decision": "reject"}, name="review-bulk-reject"),
    path(
        "<int:artifact_id>/approve/",
        views.artifact_decide,
        {"decision": "approve"},
        name="artifact-approve",
    ),
    path(
        "<int:artifact_id>/reject/",
        views.artifact_decide,
        {"decision": "reject"},
        name="artifact-reject",
    ),
]
