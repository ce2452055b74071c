"""People reviewing what a run produced: approve (per kind) or reject, with an audit log.

    approve(user, artifact, comment)   eval_labels → the project's annotations
                                       (annotator AGENT, provenance {"run": code});
                                       branch → approve_branch (a draft PR);
                                       other kinds → just marked approved
    reject(user, artifact, comment)    any kind; writes nothing else
    pending_for_user(user)             the review queue: pending artifacts of the
                                       spaces where the user may review ("use")

Every decision is also written to studio.ArtifactReview (who, when, comment,
what it did): the audit log of reviews.

A pull request is opened only here, by a person with the "use" role in the
run's space approving the run's branch artifact, never by the agent. What is
sent to GitHub comes from the run's own snapshot (repository URL, base branch)
and its code (branch agentloop/<run-code>), not from the artifact's metadata,
which the runner (and so the agent) wrote.

The review state is claimed with a conditional UPDATE (pending → approved), so
two reviewers cannot open two pull requests; if GitHub refuses, the claim is
given back and the branch is pending again.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from agentloop.formatting import count
from agentloop.review import github
from agentloop.review.models import ArtifactReview
from agentloop.runner.repo import branch_for
from agentloop.runs.access import get_run_for_user
from agentloop.runs.models import Artifact, ArtifactKind, EventKind, EventSource, ReviewState
from agentloop.runs.redaction import redact_text, run_secrets
from agentloop.teams.access import spaces_for_user
from agentloop.traces.annotations import (
    AnnotationInputSerializer,
    InvalidAnnotation,
    upsert_annotations,
)
from agentloop.traces.models import AnnotatorKind, SpanAnnotation

MAX_COMMENT_LENGTH = 10_000


class ReviewError(ValidationError):
    """The review cannot be done; the message says why, for the person reviewing."""


def _claim(artifact: Artifact, user, state: str, comment: str, now) -> None:
    claimed = Artifact.objects.filter(pk=artifact.pk, review_state=ReviewState.PENDING).update(
        review_state=state, reviewer=user, reviewed_at=now, review_comment=comment
    )
    artifact.refresh_from_db()
    if claimed != 1:
        raise ReviewError(
            f"This {artifact.get_kind_display().lower()} was already "
            f"{artifact.get_review_state_display().lower()}."
        )


def _comment(comment) -> str:
    comment = (comment or "").strip()
    if len(comment) > MAX_COMMENT_LENGTH:
        raise ReviewError(f"The comment is longer than {MAX_COMMENT_LENGTH:,} characters.")
    return comment


def _audit(artifact: Artifact, user, decision: str, comment: str, effect: str, now) -> None:

    ArtifactReview.objects.create(
        artifact=artifact,
        space_id=artifact.run.space_id,
        reviewer=user,
        reviewer_name=user.get_username(),
        decision=decision,
        comment=comment,
        effect=effect,
        at=now,
    )


def reject(user, artifact: Artifact, comment: str = "", *, now=None) -> Artifact:
    """Mark a pending artifact rejected (any kind)."""
    get_run_for_user(user, artifact.run.code, "use")
    now = now or timezone.now()
    comment = _comment(comment)
    with transaction.atomic():
        _claim(artifact, user, ReviewState.REJECTED, comment, now)
        _audit(artifact, user, ReviewState.REJECTED, comment, "Nothing written.", now)
    return artifact


def label_items(artifact: Artifact) -> list[dict]:
    """The eval_labels artifact's proposals as upsert_annotations items (AGENT labels).

    ReviewError when the content is not a list of valid labels: nothing is written.
    """
    try:
        proposals = json.loads(artifact.content or "[]")
    except ValueError as error:
        raise ReviewError(f"These eval labels are not valid JSON ({error}).") from None
    if not isinstance(proposals, list) or not proposals:
        raise ReviewError("These eval labels hold no list of labels to write.")
    items = []
    for number, proposal in enumerate(proposals, 1):
        if not isinstance(proposal, dict):
            raise ReviewError(f"Label {number} is not an object.")
        data = {**proposal, "annotator_kind": AnnotatorKind.AGENT}
        serializer = AnnotationInputSerializer(data=data)
        if not serializer.is_valid():
            problems = "; ".join(
                f"{field}: {' '.join(str(m) for m in messages)}"
                for field, messages in serializer.errors.items()
            )
            raise ReviewError(f"Label {number} is not valid ({problems}).")
        items.append(dict(serializer.validated_data))
    return items


def already_applied(project, items: list[dict]) -> set[int]:
    """Indexes of the label items the project already holds as they are (same span,
    eval and label or score): approving them again would change nothing."""
    if not items:
        return set()
    held = {
        (span_id, name, identifier): (label, score)
        for span_id, name, identifier, label, score in SpanAnnotation.objects.filter(
            project=project, span__span_id__in={item["span_id"] for item in items}
        ).values_list("span__span_id", "name", "identifier", "label", "score")
    }
    same = set()
    for index, item in enumerate(items):
        key = (item["span_id"], item["name"], item.get("identifier", ""))
        if held.get(key) == (item.get("label", ""), item.get("score")):
            same.add(index)
    return same


def _chosen_labels(items: list[dict], keep, edits) -> list[dict]:
    """The items a reviewer kept (indexes; None keeps all), with their edited labels."""
    chosen = []
    for index, item in enumerate(items):
        if keep is not None and index not in keep:
            continue
        edited = (edits or {}).get(index)
        if edited is not None:
            edited = str(edited).strip()
            if not edited or len(edited) > 200:
                raise ReviewError(f"Label {index + 1}: a label is 1 to 200 characters.")
            item = {**item, "label": edited}
        chosen.append(item)
    return chosen


def approve(
    user, artifact: Artifact, comment: str = "", *, now=None, keep=None, edits=None
) -> Artifact:
    """Approve a pending artifact and do what approving its kind means.

    For eval labels, `keep` (label indexes) and `edits` ({index: label}) are the
    reviewer's per-label decisions: labels not kept are rejected, labels the
    project already holds as they are are skipped (not written twice), and every
    annotation written names its run, artifact and approver (provenance).
    """
    if artifact.kind == ArtifactKind.BRANCH:
        return approve_branch(user, artifact, comment, now=now)
    run = get_run_for_user(user, artifact.run.code, "use")
    comment = _comment(comment)
    now = now or timezone.now()
    if artifact.kind == ArtifactKind.PULL_REQUEST:
        raise ReviewError("A pull request is reviewed on GitHub, not here.")
    with transaction.atomic():
        if artifact.kind == ArtifactKind.EVAL_LABELS:
            items = label_items(artifact)
            chosen = _chosen_labels(items, keep, edits)
            same = already_applied(run.project, chosen)
            fresh = [item for index, item in enumerate(chosen) if index not in same]
            provenance = {
                "run": str(run.code),
                "artifact": artifact.pk,
                "approved_by": user.get_username(),
            }
            try:
                written = upsert_annotations(
                    run.project, fresh, created_by=user, provenance=provenance
                )
            except InvalidAnnotation as error:
                raise ReviewError(f"No labels were written: {error}") from None
            effect = f"Wrote {count(len(written), 'annotation')}."
            if len(chosen) < len(items):
                effect += f" Rejected {count(len(items) - len(chosen), 'label')}."
            if same:
                effect += f" Skipped {count(len(same), 'label')} already applied."
        else:
            effect = "Marked approved."
        _claim(artifact, user, ReviewState.APPROVED, comment, now)
        _audit(artifact, user, ReviewState.APPROVED, comment, effect, now)
    return artifact


def _pull_request_text(run, artifact: Artifact, user, comment: str) -> tuple[str, str]:
    secrets = run_secrets(run)
    first_line = redact_text(
        run.prompt.strip().splitlines()[0] if run.prompt.strip() else "", secrets
    )
    title = f"agentloop: {first_line}"[:120] if first_line else f"agentloop run {run.code}"
    meta = artifact.metadata or {}
    stat = meta.get("diffstat") or {}
    lines = [
        f"Opened as a draft by agentloop after {user.get_username()} approved the branch of "
        f"run `{run.code}`.",
        "",
        f"Run: {settings.AGENTLOOP_PUBLIC_URL.rstrip('/')}{reverse('swarms-run', args=[run.code])}",
    ]
    if run.preset_name:
        lines.append(f"Preset: {run.preset_name}")
    if stat:
        lines.append(
            f"Changes: {stat.get('files_changed', 0)} files, +{stat.get('insertions', 0)} "
            f"−{stat.get('deletions', 0)} in {meta.get('commit_count', '?')} commits"
        )
    if comment:
        lines += ["", "Reviewer's comment:", "", redact_text(comment, secrets)]
    return title, "\n".join(lines)


def approve_branch(user, artifact: Artifact, comment: str = "", *, now=None) -> Artifact:
    """Approve a run's branch: open a draft pull request and return its pull_request artifact."""
    run = get_run_for_user(user, artifact.run.code, "use")
    comment = _comment(comment)
    if artifact.kind != ArtifactKind.BRANCH:
        raise ReviewError("Only a branch opens a pull request.")
    repository = run.config.get("repository") or {}
    if not repository.get("url"):
        raise ReviewError("This run had no repository, so it has no branch to propose.")
    head = branch_for(str(run.code))
    if (artifact.metadata or {}).get("branch") != head:
        raise ReviewError(f"This artifact does not name the run's branch {head}.")
    token = run.secret_env().get("GH_TOKEN")
    if not token:
        raise ReviewError("This run had no GitHub token (GH_TOKEN from a GitHub skill).")
    owner, repo = github.parse_repository(repository["url"])
    base = repository.get("base_branch") or "main"
    now = now or timezone.now()
    _claim(artifact, user, ReviewState.APPROVED, comment, now)
    title, body = _pull_request_text(run, artifact, user, comment)
    try:
        pull = github.GitHubClient(token).create_pull_request(
            owner, repo, head=head, base=base, title=title, body=body, draft=True
        )
    except github.GitHubError as error:
        # Give the claim back: nothing was opened, someone may try again.
        Artifact.objects.filter(pk=artifact.pk, review_state=ReviewState.APPROVED).update(
            review_state=ReviewState.PENDING, reviewer=None, reviewed_at=None, review_comment=""
        )
        artifact.refresh_from_db()
        raise ReviewError(f"The pull request was not opened. {error.message}") from None
    number = pull.get("number")
    with transaction.atomic():
        _audit(
            artifact, user, ReviewState.APPROVED, comment, f"Opened pull request #{number}.", now
        )
        pull_request = Artifact.objects.create(
            run=run,
            key=f"pull_request:{artifact.pk}",
            kind=ArtifactKind.PULL_REQUEST,
            name=f"#{number} {title}"[:300],
            content=body,
            url=str(pull.get("html_url") or "")[:1000],
            metadata={
                "number": number,
                "html_url": pull.get("html_url"),
                "repo": f"{owner}/{repo}",
                "head": head,
                "base": base,
                "draft": bool(pull.get("draft", True)),
                "branch_artifact_id": artifact.pk,
                "opened_by": user.get_username(),
            },
            # A person opened it: it is theirs now, not a proposal awaiting review.
            review_state=ReviewState.APPROVED,
            reviewer=user,
            reviewed_at=now,
        )
        run.append_event(
            EventSource.SYSTEM,
            EventKind.ARTIFACT,
            {
                "artifact_id": pull_request.pk,
                "kind": ArtifactKind.PULL_REQUEST,
                "name": pull_request.name,
                "url": pull_request.url,
            },
        )
    return pull_request


def decide_many(user, artifacts, decision: str, comment: str = "", *, now=None) -> dict:
    """Approve or reject several artifacts at once (the queue's bulk actions).

    Each is decided on its own, with its own access check and audit entry: one
    that cannot be (already decided, invalid labels, a branch, which needs its
    own page) is reported and the others still are. {"done": [...], "problems": [...]}.
    """
    done, problems = [], []
    for artifact in artifacts:
        try:
            if decision == "approve":
                if artifact.kind == ArtifactKind.BRANCH:
                    raise ReviewError("a branch is approved on its own page (it opens a PR).")
                approve(user, artifact, comment, now=now)
            else:
                reject(user, artifact, comment, now=now)
        except ReviewError as error:
            problems.append(
                f"{artifact.name} (run {str(artifact.run.code)[:8]}): " + " ".join(error.messages)
            )
            continue
        done.append(artifact)
    return {"done": done, "problems": problems}


def pending_for_user(user):
    """Pending artifacts (not pull requests) of runs in spaces where `user` may review."""
    return (
        Artifact.objects.filter(
            review_state=ReviewState.PENDING,
            run__space__in=spaces_for_user(user, "use"),
        )
        .exclude(kind=ArtifactKind.PULL_REQUEST)
        .select_related("run", "run__project", "run__space")
        .order_by("-created_at", "-pk")
    )
