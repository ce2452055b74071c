"""OTLP/gRPC trace receiver: `TraceService/Export` on port 4317, run by `manage.py serve`.

Many OpenTelemetry SDKs (and Phoenix's `register(protocol="grpc")`) export over
gRPC by default. This receiver answers exactly what `POST /v1/traces` answers
for a protobuf body (ingest_app.receive_export: same key check, size limit,
decoding, partial success and per-key refusal counts), with the status mapped
to gRPC codes, and it stores the spans (committed) before it answers.

- Auth: the key in the `authorization: Bearer al_pk_…` metadata, or `api_key`.
- Compression: gRPC's own per-message gzip/deflate, undone by grpcio.
- Size: grpcio refuses a message larger than OTLP_MAX_BODY_BYTES after
  decompression with RESOURCE_EXHAUSTED before any of this runs.
- A failure while storing is answered UNAVAILABLE, which OTLP exporters retry
  (ingest is idempotent: a re-sent span is stored once).

It runs on grpc.aio in a process of its own (`manage.py otlp_grpc`), storing
on the same kind of database threads as the HTTP receiver (one on SQLite).
"""

from __future__ import annotations

import logging

import grpc
from django.conf import settings

from agentloop.database_threads import DatabaseThreads
from agentloop.teams.models import ProjectApiKey
from agentloop.traces import otlp
from agentloop.traces.ingest_app import receive_export

log = logging.getLogger(__name__)

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
DEFAULT_PORT = 4317

# The HTTP receiver's status -> the gRPC code the OTLP spec names for it.
_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
}

writer = DatabaseThreads("otlp-grpc-ingest")


def key_from_metadata(metadata) -> str | None:
    values = {key.lower(): value for key, value in metadata or ()}
    authorization = values.get("authorization", "")
    if isinstance(authorization, str) and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    key = values.get("api_key")
    if isinstance(key, str) and key.strip():
        return key.strip()
    return None


async def export(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raw_key = key_from_metadata(context.invocation_metadata())
    try:
        answer = await writer.run(
            receive_export, raw_key, otlp.PROTOBUF, "", request, ProjectApiKey.project_for_token
        )
    except Exception:
        log.exception("storing a gRPC OTLP export failed")
        await context.abort(grpc.StatusCode.UNAVAILABLE, "Storing the spans failed; retry.")
    if answer.status != 200:
        await context.abort(_CODES.get(answer.status, grpc.StatusCode.INTERNAL), answer.message)
    return answer.body  # an ExportTraceServiceResponse, with partial success if any


def handlers() -> grpc.GenericRpcHandler:
    # Bytes in, bytes out: the request is decoded by otlp.decode_export, as on HTTP.
    return grpc.method_handlers_generic_handler(
        SERVICE, {"Export": grpc.unary_unary_rpc_method_handler(export)}
    )


def make_server(host: str, port: int) -> tuple[grpc.aio.Server, int]:
    """A server listening on host:port (0: any free port) -> (server, its port); not started."""
    limit = settings.OTLP_MAX_BODY_BYTES
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", 1024 * 1024),
        ]
    )
    server.add_generic_rpc_handlers((handlers(),))
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise OSError(f"cannot listen on {host}:{port}")
    return server, bound


async def serve(host: str, port: int, *, started=None) -> None:
    server, bound = make_server(host, port)
    await server.start()
    if started is not None:
        started(server, bound)
    await server.wait_for_termination()
