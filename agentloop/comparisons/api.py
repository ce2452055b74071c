"""The side-by-side API: POST /api/v1/run-groups/ starts a group, GET …/<id>/ compares it.

Kept apart from agentloop/api (its own module and URL prefix). The same
actions as the pages: start_group checks every variant first, and the group is
read through get_group_for_user (404 for a project the caller may not see,
403 for a viewer starting one).

    POST {"project": 3, "prompt": "…", "variants": [{"harness": "codex", "model": "gpt-5"},
                                                    {"preset": 12}]}
    → 201 {"id", "project", "prompt", "created_at", "runs": [{run, label, harness, model,
           status, exit_reason, duration_seconds, input_tokens, output_tokens, total_tokens,
           cost_usd, artifacts: [{id, kind, name}]}]}
"""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from agentloop.comparisons import actions
from agentloop.teams.access import get_project_for_user

CONFIG_FIELDS = ("harness", "llm_provider", "model", "sandbox", "system_prompt", "max_turns",
                 "time_limit_seconds", "token_budget", "cost_budget_usd", "skills")  # fmt: skip


def _variant(item, number: int) -> actions.Variant:
    if not isinstance(item, dict):
        raise ValidationError({"variants": f"variant {number} must be an object."})
    if "preset" in item:
        if not isinstance(item["preset"], int) or isinstance(item["preset"], bool):
            raise ValidationError({"variants": f"variant {number}: preset must be an id."})
        return actions.Variant({}, preset_id=item["preset"])
    return actions.Variant({k: v for k, v in item.items() if k in CONFIG_FIELDS})


class RunGroupList(APIView):
    @extend_schema(request=OpenApiTypes.OBJECT, responses={201: OpenApiTypes.OBJECT})
    def post(self, request):
        body = request.data if isinstance(request.data, dict) else {}
        project_id = body.get("project")
        if not isinstance(project_id, int) or isinstance(project_id, bool):
            raise ValidationError({"project": "the project's id is required."})
        variants = body.get("variants")
        if not isinstance(variants, list):
            raise ValidationError({"variants": "a list of harness configs or presets."})
        project = get_project_for_user(request.user, project_id, "use")
        try:
            group = actions.start_group(
                request.user,
                project,
                [_variant(v, n) for n, v in enumerate(variants, 1)],
                str(body.get("prompt") or ""),
            )
        except DjangoValidationError as error:
            raise ValidationError(error.message_dict) from None
        return Response(actions.as_json(group), status=status.HTTP_201_CREATED)


class RunGroupDetail(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, group_id: int):
        return Response(actions.as_json(actions.get_group_for_user(request.user, group_id)))
