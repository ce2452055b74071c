"""REST: the review queue, approve and reject (agentloop.review.actions, as /review/).

Members and admins review the artifacts of their spaces' runs; viewers may
look at an artifact but not decide (403); outsiders get 404. A decision on an
artifact already decided is 409 with what happened to it.
"""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from agentloop.api.common import (
    PAGE_PARAMETERS,
    ApiView,
    DetailSerializer,
    page_serializer,
    paginated,
    validated,
)
from agentloop.api.sessions import ArtifactSerializer
from agentloop.review import actions
from agentloop.runs.access import get_run_for_user
from agentloop.runs.models import Artifact


class QueueItemSerializer(ArtifactSerializer):
    session = serializers.UUIDField(source="run.code", read_only=True)
    project = serializers.SerializerMethodField()

    class Meta(ArtifactSerializer.Meta):
        fields = ["session", "project", *ArtifactSerializer.Meta.fields]
        read_only_fields = fields

    def get_project(self, artifact) -> dict:
        return {"id": artifact.run.project_id, "name": artifact.run.project.name}


class DecisionSerializer(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True)


QueuePage = page_serializer("ReviewQueuePage", QueueItemSerializer)


def artifact_for(user, artifact_id, need: str) -> Artifact:
    """The artifact through its run's access helper (as the review pages' _artifact_for)."""
    try:
        artifact = Artifact.objects.select_related("run").get(pk=artifact_id)
    except (Artifact.DoesNotExist, ValueError, TypeError):
        raise Http404("No such artifact.") from None
    try:
        artifact.run = get_run_for_user(user, artifact.run.code, need)
    except Http404:
        raise Http404("No such artifact.") from None
    return artifact


class ReviewQueueView(ApiView):
    @extend_schema(
        summary="Artifacts waiting for review in the caller's spaces, newest first",
        parameters=PAGE_PARAMETERS,
        responses=QueuePage,
    )
    def get(self, request):
        return paginated(request, actions.pending_for_user(request.user), QueueItemSerializer)


class _Decide(ApiView):
    decision = ""

    def post(self, request, artifact_id):
        artifact = artifact_for(request.user, artifact_id, "use")
        body = validated(DecisionSerializer, request.data or {})
        decide = actions.approve if self.decision == "approve" else actions.reject
        artifact = decide(request.user, artifact, body.get("comment", ""))
        return Response(QueueItemSerializer(artifact_for(request.user, artifact_id, "view")).data)


class ReviewApproveView(_Decide):
    decision = "approve"

    @extend_schema(
        summary="Approve (eval labels are written; a branch opens a draft pull request)",
        request=DecisionSerializer,
        responses={200: QueueItemSerializer, 409: DetailSerializer},
    )
    def post(self, request, artifact_id):
        return super().post(request, artifact_id)


class ReviewRejectView(_Decide):
    decision = "reject"

    @extend_schema(
        summary="Reject", request=DecisionSerializer, responses={200: QueueItemSerializer}
    )
    def post(self, request, artifact_id):
        return super().post(request, artifact_id)
