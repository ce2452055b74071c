"""`POST /v1/traces`: the OTLP/HTTP trace receiver.

Answers per the OTLP/HTTP spec: an ExportTraceServiceResponse in the request's
encoding (with partial success when some spans were refused), or a
google.rpc.Status error body. Spans are committed before the 200 is sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from agentloop.teams.authentication import bearer_token
from agentloop.teams.models import ProjectApiKey
from agentloop.traces import attribute_index, otlp
from agentloop.traces.ingest import ingest_export, one_ingest_at_a_time


@csrf_exempt
@require_POST
def otlp_traces(request):
    # Daphne serves this path as plain ASGI (agentloop/traces/ingest_app.py);
    # this view gives the same answers where Django handles it (tests, WSGI).
    try:
        body = _read_body(request, settings.OTLP_MAX_BODY_BYTES)
    except otlp.BodyTooLarge:
        body = None
    answer = receive_export(
        bearer_token(request),
        request.content_type or "",
        request.headers.get("Content-Encoding", ""),
        body,
        _project_of_key,
    )
    response = HttpResponse(answer.body, status=answer.status, content_type=answer.content_type)
    for name, value in answer.headers:
        response[name] = value
    return response


@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str
    headers: list[tuple[str, str]] = field(default_factory=list)


def receive_export(
    raw_key: str | None, content_type: str, encoding: str, body: bytes | None, project_of_key
) -> Answer:
    """The whole OTLP/HTTP answer to one export; body None when it was over the limit.

    project_of_key(raw_key) -> the key's Project, or None. Checks in this
    order: key (401), content type and encoding (415), size (413), decoding
    (400, 413 for a gzip body that inflates past the limit); then the spans
    are stored (committed) and the 200 answered.
    """
    content_type = content_type.split(";")[0].strip().lower()
    # Errors are answered in the request's encoding; JSON when it has none we know.
    answer_as = content_type if content_type in otlp.CONTENT_TYPES else otlp.JSON

    project = project_of_key(raw_key) if raw_key else None
    if project is None:
        message = (
            "Unknown or revoked API key."
            if raw_key
            else "Send a project API key: `Authorization: Bearer al_pk_…` or an `api_key` header."
        )
        answer = _error(401, otlp.UNAUTHENTICATED, message, answer_as)
        answer.headers.append(("WWW-Authenticate", 'Bearer realm="agentloop"'))
        return answer

    if content_type not in otlp.CONTENT_TYPES:
        return _error(
            415,
            otlp.INVALID_ARGUMENT,
            f"Unsupported Content-Type {content_type or '(none)'!r}: "
            "send application/x-protobuf or application/json.",
            answer_as,
        )
    encoding = encoding.strip().lower()
    if encoding not in ("", "identity", "gzip"):
        return _error(
            415,
            otlp.INVALID_ARGUMENT,
            f"Unsupported Content-Encoding {encoding!r}: send gzip or no encoding.",
            answer_as,
        )

    limit = settings.OTLP_MAX_BODY_BYTES
    if body is None:
        message = f"Request too large: the body is larger than {limit} bytes."
        return _error(413, otlp.RESOURCE_EXHAUSTED, message, answer_as)
    with one_ingest_at_a_time():
        try:
            if encoding == "gzip":
                body = otlp.gunzip_bounded(body, limit)
            decoded = otlp.decode_export(
                body, content_type, attribute_tokens=attribute_index.tokens_at_ingest()
            )
        except otlp.BodyTooLarge as exc:
            return _error(413, otlp.RESOURCE_EXHAUSTED, f"Request too large: {exc}.", answer_as)
        except otlp.OtlpDecodeError as exc:
            message = f"Invalid OTLP trace export: {exc}."
            return _error(400, otlp.INVALID_ARGUMENT, message, answer_as)
        result = ingest_export(project, decoded)
    return Answer(200, otlp.export_response(result.rejected, content_type), content_type)


def _project_of_key(raw_key: str):
    key = ProjectApiKey.authenticate(raw_key)
    return key.project if key is not None else None


def _read_body(request, limit: int) -> bytes:
    declared = request.META.get("CONTENT_LENGTH")
    if declared and declared.isdigit() and int(declared) > limit:
        raise otlp.BodyTooLarge(f"the body is larger than {limit} bytes")
    # Read one byte past the limit so a body without (or with a wrong) length is caught too.
    body = request.read(limit + 1)
    if len(body) > limit:
        raise otlp.BodyTooLarge(f"the body is larger than {limit} bytes")
    return body


def _error(status: int, code: int, message: str, content_type: str) -> Answer:
    return Answer(status, otlp.status_body(code, message, content_type), content_type)
