"""Start the web process (daphne) and the worker (django-q2 cluster) together.

`make run` calls this after migrating and seeding. Ctrl-C stops both; if one
dies, the other is stopped too, so nothing is left running half-way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.core.management.base import BaseCommand

from agentloop.traces.maintenance import refresh_planner_statistics


class Command(BaseCommand):
    help = "Run daphne and the django-q2 cluster on 127.0.0.1."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-worker", action="store_true", help="Only the web process.")

    def handle(self, *args, host, port, no_worker, **options):
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
        if not no_worker:
            procs.append(subprocess.Popen(worker, env=env))
        self.stdout.write(self.style.SUCCESS(f"agentloop is running at http://{host}:{port}/"))
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
