"""`POST /v1/traces`: the OTLP/HTTP trace receiver.

Answers per the OTLP/HTTP spec: an ExportTraceServiceResponse in the request's
encoding (with partial success when some spans were refused), or a
google.rpc.Status error body. Spans are committed before the 200 is sent.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from agentloop.teams.authentication import bearer_token
from agentloop.teams.models import ProjectApiKey
from agentloop.traces import otlp
from agentloop.traces.ingest import ingest_export, one_ingest_at_a_time


@csrf_exempt
@require_POST
def otlp_traces(request):
    content_type = request.content_type.lower() if request.content_type else ""
    # Errors are answered in the request's encoding; JSON when it has none we know.
    answer_as = content_type if content_type in otlp.CONTENT_TYPES else otlp.JSON

    raw_key = bearer_token(request)
    key = ProjectApiKey.authenticate(raw_key) if raw_key else None
    if key is None:
        message = (
            "Unknown or revoked API key."
            if raw_key
            else "Send a project API key: `Authorization: Bearer al_pk_…` or an `api_key` header."
        )
        response = _error(401, otlp.UNAUTHENTICATED, message, answer_as)
        response["WWW-Authenticate"] = 'Bearer realm="agentloop"'
        return response

    if content_type not in otlp.CONTENT_TYPES:
        return _error(
            415,
            otlp.INVALID_ARGUMENT,
            f"Unsupported Content-Type {content_type or '(none)'!r}: "
            "send application/x-protobuf or application/json.",
            answer_as,
        )
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity", "gzip"):
        return _error(
            415,
            otlp.INVALID_ARGUMENT,
            f"Unsupported Content-Encoding {encoding!r}: send gzip or no encoding.",
            answer_as,
        )

    limit = settings.OTLP_MAX_BODY_BYTES
    try:
        body = _read_body(request, limit)
    except otlp.BodyTooLarge as exc:
        return _error(413, otlp.RESOURCE_EXHAUSTED, f"Request too large: {exc}.", answer_as)
    with one_ingest_at_a_time():
        try:
            if encoding == "gzip":
                body = otlp.gunzip_bounded(body, limit)
            decoded = otlp.decode_export(body, content_type)
        except otlp.BodyTooLarge as exc:
            return _error(413, otlp.RESOURCE_EXHAUSTED, f"Request too large: {exc}.", answer_as)
        except otlp.OtlpDecodeError as exc:
            message = f"Invalid OTLP trace export: {exc}."
            return _error(400, otlp.INVALID_ARGUMENT, message, answer_as)
        result = ingest_export(key.project, decoded)
    return HttpResponse(
        otlp.export_response(result.rejected, content_type), content_type=content_type
    )


def _read_body(request, limit: int) -> bytes:
    declared = request.META.get("CONTENT_LENGTH")
    if declared and declared.isdigit() and int(declared) > limit:
        raise otlp.BodyTooLarge(f"the body is larger than {limit} bytes")
    # Read one byte past the limit so a body without (or with a wrong) length is caught too.
    body = request.read(limit + 1)
    if len(body) > limit:
        raise otlp.BodyTooLarge(f"the body is larger than {limit} bytes")
    return body


def _error(status: int, code: int, message: str, content_type: str) -> HttpResponse:
    return HttpResponse(
        otlp.status_body(code, message, content_type), status=status, content_type=content_type
    )
