"""The review queue and an artifact's review page, at /review/.

Members ("use") approve or reject; viewers look; outsiders get 404.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from agentloop.review import actions as review
from agentloop.review.models import ArtifactReview
from agentloop.runs.access import get_run_for_user
from agentloop.runs.models import Artifact
from agentloop.teams.access import spaces_for_user


def _error_text(error: ValidationError) -> str:
    return " ".join(error.messages)


@login_required
def review_queue(request):
    pending = list(review.pending_for_user(request.user)[:200])
    recent = ArtifactReview.objects.filter(
        space__in=spaces_for_user(request.user, "view")
    ).select_related("artifact", "artifact__run")[:50]
    return render(request, "review/queue.html", {"pending": pending, "recent": recent})


def _artifact_for(user, artifact_id, need: str) -> Artifact:
    try:
        artifact = Artifact.objects.select_related("run").get(pk=artifact_id)
    except (Artifact.DoesNotExist, ValueError, TypeError):
        raise Http404("No such artifact.") from None
    try:
        artifact.run = get_run_for_user(user, artifact.run.code, need)
    except Http404:
        raise Http404("No such artifact.") from None
    return artifact


@login_required
def artifact_review(request, artifact_id):
    artifact = _artifact_for(request.user, artifact_id, "view")
    labels, labels_problem = [], ""
    if artifact.kind == "eval_labels":
        try:
            labels = review.label_items(artifact)
        except ValidationError as error:
            labels_problem = _error_text(error)
    context = {
        "artifact": artifact,
        "run": artifact.run,
        "labels": labels,
        "labels_problem": labels_problem,
        "audit": artifact.reviews.all(),
        "can_review": artifact.run.space.can_use(request.user),
    }
    return render(request, "review/artifact.html", context)


@login_required
@require_POST
def artifact_decide(request, artifact_id, decision):
    artifact = _artifact_for(request.user, artifact_id, "use")
    comment = request.POST.get("comment", "")
    try:
        if decision == "approve":
            review.approve(request.user, artifact, comment)
            messages.success(request, f"Approved {artifact.name}.")
        else:
            review.reject(request.user, artifact, comment)
            messages.success(request, f"Rejected {artifact.name}.")
    except ValidationError as error:
        messages.error(request, _error_text(error))
    return _back(request, artifact)


def _back(request, artifact):
    """Where the decision was made: the queue, the session page, or the artifact's page."""
    where = request.POST.get("next")
    if where == "queue":
        return redirect("review-queue")
    if where == "session":
        return redirect(
            reverse("studio-session", args=[artifact.run.code]) + f"#artifact-{artifact.pk}"
        )
    return redirect("artifact-review", artifact.pk)
