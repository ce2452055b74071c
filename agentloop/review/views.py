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

from agentloop.formatting import count
from agentloop.review import actions as review
from agentloop.review.models import ArtifactReview
from agentloop.runs.access import get_run_for_user
from agentloop.runs.models import Artifact
from agentloop.teams.access import spaces_for_user


def _error_text(error: ValidationError) -> str:
    return " ".join(error.messages)


QUEUE_SHOWN = 500


def _queue_groups(pending: list[Artifact]) -> list[dict]:
    """Pending artifacts grouped by finding (kind and name: the same file of many
    runs is one decision to make), newest group first, each with its runs; eval
    labels say how many labels they hold and how many are already applied."""
    groups: dict[tuple, dict] = {}
    for artifact in pending:
        key = (artifact.kind, artifact.name)
        group = groups.setdefault(
            key, {"kind": artifact.get_kind_display(), "name": artifact.name, "items": []}
        )
        item = {"artifact": artifact, "labels": None, "applied": 0}
        if artifact.kind == "eval_labels":
            try:
                labels = review.label_items(artifact)
            except ValidationError:
                labels = []
            item["labels"] = len(labels)
            item["applied"] = len(review.already_applied(artifact.run.project, labels))
        group["items"].append(item)
    for group in groups.values():
        group["ids"] = ",".join(str(item["artifact"].pk) for item in group["items"])
        group["runs"] = len({item["artifact"].run_id for item in group["items"]})
    return list(groups.values())


@login_required
def review_queue(request):
    pending = list(review.pending_for_user(request.user)[:QUEUE_SHOWN])
    recent = ArtifactReview.objects.filter(
        space__in=spaces_for_user(request.user, "view")
    ).select_related("artifact", "artifact__run")[:50]
    return render(
        request,
        "review/queue.html",
        {"pending": pending, "groups": _queue_groups(pending), "recent": recent},
    )


def _ids(request) -> list[int]:
    raw = request.POST.getlist("artifact") + (request.POST.get("ids") or "").split(",")
    return sorted({int(value) for value in raw if value.strip().isdigit()})


@login_required
@require_POST
def bulk_decide(request, decision):
    """Approve or reject the artifacts ticked in the queue (or a whole group)."""
    ids = _ids(request)
    if not ids:
        messages.error(request, "Tick at least one artifact first.")
        return redirect("review-queue")
    artifacts = [_artifact_for(request.user, artifact_id, "use") for artifact_id in ids]
    result = review.decide_many(request.user, artifacts, decision, request.POST.get("comment", ""))
    verb = "Approved" if decision == "approve" else "Rejected"
    if result["done"]:
        messages.success(request, f"{verb} {count(len(result['done']), 'artifact')}.")
    for problem in result["problems"]:
        messages.error(request, f"Not {verb.lower()}: {problem}")
    return redirect("review-queue")


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
    labels, labels_problem, applied = [], "", set()
    if artifact.kind == "eval_labels":
        try:
            labels = review.label_items(artifact)
        except ValidationError as error:
            labels_problem = _error_text(error)
        applied = review.already_applied(artifact.run.project, labels)
    labels = [
        {**label, "index": index, "applied": index in applied} for index, label in enumerate(labels)
    ]
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
            keep, edits = _label_decisions(request)
            review.approve(request.user, artifact, comment, keep=keep, edits=edits)
            messages.success(request, f"Approved {artifact.name}.")
        else:
            review.reject(request.user, artifact, comment)
            messages.success(request, f"Rejected {artifact.name}.")
    except ValidationError as error:
        messages.error(request, _error_text(error))
    return _back(request, artifact)


def _label_decisions(request):
    """The per-label choices of the artifact page: which to keep, what to call them.
    A form without them (the queue, the session page) keeps every label as it is."""
    if request.POST.get("per_label") != "1":
        return None, None
    keep = {int(v) for v in request.POST.getlist("keep") if v.isdigit()}
    edits = {}
    for name, value in request.POST.items():
        if name.startswith("label-") and name[6:].isdigit():
            edits[int(name[6:])] = value
    return keep, edits


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
