"""Hash newly ingested spans into the attribute index (SQLite; see attribute_index.py).

    manage.py index_attributes            # catch up once, then exit
    manage.py index_attributes --follow   # keep up until stopped (serve runs this)

On PostgreSQL ingest fills the index itself; the command says so and exits.
"""

from __future__ import annotations

import os
import signal
import time

from django.core.management.base import BaseCommand

from agentloop.traces import attribute_index

PROGRESS_EVERY = 50_000


class Command(BaseCommand):
    help = "Hash new spans' attribute values into the attribute index (SQLite)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--follow", action="store_true", help="keep indexing new spans until stopped"
        )
        parser.add_argument(
            "--interval",
            type=float,
            default=0.5,
            help="seconds to wait when there is nothing new (with --follow)",
        )
        parser.add_argument("--batch", type=int, default=2000, help="spans per transaction")

    def handle(self, *args, follow, interval, batch, **options):
        if attribute_index.tokens_at_ingest():
            self.stdout.write("Nothing to do: on PostgreSQL, ingest fills the attribute index.")
            return
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        if follow:
            signal.signal(signal.SIGTERM, stop)
            signal.signal(signal.SIGINT, stop)
            # Ingest first: when the cores are busy the indexer falls behind
            # (filters then read the spans past its mark) and catches up after.
            os.nice(10)
        total = 0
        while not stopping:
            # One SQLite connection for the process's life: it only ever
            # writes the index, one short transaction at a time.
            done = attribute_index.index_new_spans(batch)
            total += done
            if done:
                if not follow and total // PROGRESS_EVERY != (total - done) // PROGRESS_EVERY:
                    self.stdout.write(f"… {total} spans")
                continue
            if not follow:
                break
            time.sleep(interval)
        self.stdout.write(f"Indexed the attributes of {total} spans.")
