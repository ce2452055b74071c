"""Start the web process (daphne), the OTLP/gRPC receiver (`otlp_grpc`, port
4317) and the worker (django-q2 cluster) together, and on SQLite the
attribute indexer (`index_attributes --follow`).

`make run` calls this after migrating and seeding. Ctrl-C stops them all; if
one dies, the others are stopped too, so nothing is left running half-way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.core.management.base import BaseCommand

from agentloop.traces import attribute_index
from agentloop.traces.maintenance import refresh_planner_statistics


class Command(BaseCommand):
    help = "Run daphne, the django-q2 cluster and (SQLite) the attribute indexer on 127.0.0.1."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--grpc-port",
            type=int,
            default=4317,
            help="Port of the OTLP/gRPC trace receiver (0: do not start it).",
        )
        parser.add_argument(
            "--no-worker", action="store_true", help="Only the web process (no worker, no indexer)."
        )

    def handle(self, *args, host, port, grpc_port, no_worker, **options):
        refresh_planner_statistics()
        env = dict(os.environ)
        env.setdefault("AGENTLOOP_PUBLIC_URL", f"http://{host}:{port}")
        web = [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            host,
            "-p",
            str(port),
            "agentloop.asgi:application",
        ]
        worker = [sys.executable, "manage.py", "qcluster"]
        procs = [subprocess.Popen(web, env=env)]
        if grpc_port:
            grpc = [
                sys.executable,
                "manage.py",
                "otlp_grpc",
                "--host",
                host,
                "--port",
                str(grpc_port),
            ]
            procs.append(subprocess.Popen(grpc, env=env))
        if not no_worker:
            procs.append(subprocess.Popen(worker, env=env))
            if not attribute_index.tokens_at_ingest():
                # SQLite: ingest leaves attribute hashing to this process, so
                # it does not cost ingest's throughput (attribute_index.py).
                indexer = [sys.executable, "manage.py", "index_attributes", "--follow"]
                procs.append(subprocess.Popen(indexer, env=env))
        self.stdout.write(self.style.SUCCESS(f"agentloop is running at http://{host}:{port}/"))
        if grpc_port:
            self.stdout.write(f"OTLP/gRPC trace exports: {host}:{grpc_port}")
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping and all(p.poll() is None for p in procs):
                time.sleep(0.5)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
        failed = [p for p in procs if p.returncode not in (0, -signal.SIGTERM, None)]
        if failed and not stopping:
            raise SystemExit(1)
