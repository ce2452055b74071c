"""What every REST route shares: the base view, JSON errors, and one pagination.

Errors are `{"detail": "…"}`; a refused input also has `"errors": {field:
[messages]}`, one entry per field (Django's ValidationError from the actions,
or DRF's from a serializer). A refusal of the current state — a trigger the
admission checks refuse, a follow-up to a finished run, an artifact already
reviewed — is 409 with the reason.

Pagination, everywhere: `?limit=` (1–1000, default 100) and `?cursor=`, the
answer `{"data": [...], "next_cursor": str | null}`. Lists ordered by time use
the keyset cursor of the span list; a run's events use `after=` (a seq) and
their `next_cursor` is the last seq of the page.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from agentloop.api.parsers import JSONParser  # deep JSON is a 400, not a 500
from agentloop.automations.actions import AutomationError
from agentloop.review.actions import ReviewError
from agentloop.runs.actions import RunNotActive
from agentloop.traces.annotations import InvalidAnnotation
from agentloop.traces.queries import InvalidFilter, page_by_time, parse_limit

# Refusals of the state things are in, not of the input: 409 Conflict.
CONFLICTS = (AutomationError, RunNotActive, ReviewError)


class Conflict(DjangoValidationError):
    """Raised by a view for a 409 with this message."""


def _field_errors(detail) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        out = {}
        for field, messages in detail.items():
            name = "detail" if field in ("non_field_errors", "__all__") else str(field)
            if isinstance(messages, dict):
                for inner, inner_messages in _field_errors(messages).items():
                    out[f"{name}.{inner}"] = inner_messages
            else:
                items = messages if isinstance(messages, list) else [messages]
                out[name] = [str(m) for m in items]
        return out
    items = detail if isinstance(detail, list) else [detail]
    return {"detail": [str(m) for m in items]}


def error_body(errors: dict[str, list[str]]) -> dict:
    lines = [
        " ".join(messages) if field == "detail" else f"{field}: {' '.join(messages)}"
        for field, messages in errors.items()
    ]
    body = {"detail": " ".join(lines)}
    fields = {k: v for k, v in errors.items() if k != "detail"}
    if fields:
        body["errors"] = fields
    return body


class ApiView(APIView):
    parser_classes = [JSONParser]

    def get_authenticate_header(self, request):
        # Session auth comes first in the settings and has no challenge, which
        # would turn "not logged in" into 403; an API caller should see 401.
        return 'Bearer realm="agentloop"'

    def handle_exception(self, exc):
        if isinstance(exc, InvalidFilter | InvalidAnnotation):
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        if isinstance(exc, CONFLICTS + (Conflict,)):
            return Response({"detail": " ".join(exc.messages)}, status=status.HTTP_409_CONFLICT)
        if isinstance(exc, DjangoValidationError):
            detail = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
            return Response(error_body(_field_errors(detail)), status=400)
        if isinstance(exc, ValidationError):
            return Response(error_body(_field_errors(exc.detail)), status=400)
        return super().handle_exception(exc)


def validated(serializer_class, data, **kwargs) -> dict:
    """The serializer's validated data, or a DRF ValidationError (a 400 per field)."""
    if not isinstance(data, dict):
        raise ValidationError({"detail": ["Expected a JSON object."]})
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


PAGE_PARAMETERS = [
    OpenApiParameter("limit", int, description="Rows per page, 1–1000 (default 100)."),
    OpenApiParameter("cursor", str, description="`next_cursor` of the previous page."),
]


def paginated(request, queryset, serializer, time_field: str = "created_at", **context):
    """One page of `queryset` newest first, as `{"data", "next_cursor"}`."""
    cursor = request.query_params.get("cursor") or None
    limit = parse_limit(request.query_params.get("limit"))
    rows, next_cursor = page_by_time(queryset, cursor, limit, time_field)
    data = serializer(rows, many=True, context={"request": request, **context}).data
    return Response({"data": data, "next_cursor": next_cursor})


def page_serializer(name: str, item) -> type[serializers.Serializer]:
    """The OpenAPI shape of a page of `item`s."""
    return type(
        name,
        (serializers.Serializer,),
        {
            "data": item(many=True),
            "next_cursor": serializers.CharField(allow_null=True),
            "Meta": type("Meta", (), {"ref_name": name}),
        },
    )


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField()
