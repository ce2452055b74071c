"""`POST /v1/traces`: the OTLP/HTTP trace receiver, a plain ASGI app.

Answers per the OTLP/HTTP spec: an ExportTraceServiceResponse in the request's
encoding (with partial success when some spans were refused), or a
google.rpc.Status error body. Spans are committed before the 200 is sent.

Ingest's target is 10,000 spans/s on SQLite with one client; Django's request
handling (a thread and a new database connection per request) and compiling
the API key's ORM query cost ~8 ms of each 512-span request, about a tenth of
it (agentloop/fastpath.py says more), so this path has no Django view. The
body is read on the event loop; key, decoding and storing run on threads
whose connection stays open (agentloop/database_threads.py: one on SQLite,
which takes one writer at a time, so this process's requests queue here in
order instead of contending in SQLite's busy handler).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from django.conf import settings

from agentloop import fastpath
from agentloop.database_threads import DatabaseThreads
from agentloop.teams.models import ApiKeyRefusal, ProjectApiKey
from agentloop.traces import attribute_index, otlp
from agentloop.traces.ingest import ingest_export

PATH = "/v1/traces"

writer = DatabaseThreads("otlp-ingest")


async def _handle(scope, receive, send):
    if scope["method"] != "POST":
        return await fastpath.respond(send, 405, b"", [("allow", "POST")])
    headers = fastpath.headers_of(scope)
    try:
        body = await fastpath.read_body(receive, settings.OTLP_MAX_BODY_BYTES)
    except fastpath.BodyTooLarge:
        body = None  # answered 413, after the key is checked
    # Not retried: a failed store is answered 500 and the exporter retries it.
    answer = await writer.run(
        receive_export,
        fastpath.bearer_token(headers) or None,
        headers.get("content-type", ""),
        headers.get("content-encoding", ""),
        body,
        ProjectApiKey.project_for_token,
    )
    await fastpath.respond(
        send,
        answer.status,
        answer.body,
        [("content-type", answer.content_type), *answer.headers],
    )


async def _answer_failure(send):
    body = otlp.status_body(13, "Storing the spans failed.", otlp.JSON)  # 13: INTERNAL
    await fastpath.respond(send, 500, body, [("content-type", otlp.JSON)])


application = fastpath.plain_app(_handle, _answer_failure, "OTLP ingest")


@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    refusal: str = ""  # why a whole export was refused, as counted for its key
    message: str = ""  # an error's text (the gRPC receiver answers it as the status details)


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

    answer = _stored(project, content_type, encoding.strip().lower(), body, answer_as)
    if answer.refusal:
        # A whole export refused under a valid key: counted on the key's project's
        # settings page, since an exporter logs such an answer once at most.
        key_id = getattr(project, "api_key_id", None)
        if key_id is not None:
            ApiKeyRefusal.count(key_id, Counter({answer.refusal: 0}))
    return answer


def _stored(project, content_type: str, encoding: str, body: bytes | None, answer_as) -> Answer:
    if content_type not in otlp.CONTENT_TYPES:
        return _error(
            415,
            otlp.INVALID_ARGUMENT,
            f"Unsupported Content-Type {content_type or '(none)'!r}: "
            "send application/x-protobuf or application/json.",
            answer_as,
            refusal="whole export refused: unsupported Content-Type",
        )
    if encoding not in ("", "identity", "gzip"):
        return _error(
            415,
            otlp.INVALID_ARGUMENT,
            f"Unsupported Content-Encoding {encoding!r}: send gzip or no encoding.",
            answer_as,
            refusal="whole export refused: unsupported Content-Encoding",
        )

    limit = settings.OTLP_MAX_BODY_BYTES
    too_large = f"whole export refused: larger than {limit} bytes"
    if body is None:
        message = f"Request too large: the body is larger than {limit} bytes."
        return _error(413, otlp.RESOURCE_EXHAUSTED, message, answer_as, refusal=too_large)
    try:
        if encoding == "gzip":
            body = otlp.gunzip_bounded(body, limit)
        decoded = otlp.decode_export(
            body, content_type, attribute_tokens=attribute_index.tokens_at_ingest()
        )
    except otlp.BodyTooLarge as exc:
        message = f"Request too large: {exc}."
        return _error(413, otlp.RESOURCE_EXHAUSTED, message, answer_as, refusal=too_large)
    except otlp.OtlpDecodeError as exc:
        message = f"Invalid OTLP trace export: {exc}."
        refusal = "whole export refused: not a valid OTLP trace export"
        return _error(400, otlp.INVALID_ARGUMENT, message, answer_as, refusal=refusal)
    result = ingest_export(project, decoded, key_id=getattr(project, "api_key_id", None))
    return Answer(200, otlp.export_response(result.rejected, content_type), content_type)


def _error(status: int, code: int, message: str, content_type: str, refusal: str = "") -> Answer:
    body = otlp.status_body(code, message, content_type)
    return Answer(status, body, content_type, refusal=refusal, message=message)
