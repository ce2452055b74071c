"""Serve OTLP/gRPC trace exports (agentloop/traces/otlp_grpc.py); `serve` starts it."""

from __future__ import annotations

import asyncio

from django.core.management.base import BaseCommand

from agentloop.traces import otlp_grpc


class Command(BaseCommand):
    help = "Receive OTLP/gRPC trace exports (TraceService/Export) on host:port."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=otlp_grpc.DEFAULT_PORT)

    def handle(self, *args, host, port, **options):
        def started(server, bound):
            self.stdout.write(f"OTLP/gRPC on {host}:{bound}")
            self.stdout.flush()

        asyncio.run(otlp_grpc.serve(host, port, started=started))
