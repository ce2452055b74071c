"""Roll spans up into the totals that analytics reads long windows from (rollups.py).

    manage.py roll_up_spans              # catch up, printing progress, then exit
    manage.py roll_up_spans --rebuild    # forget every rollup and roll all spans up again

The worker does the same every minute (schedule `agentloop.traces.rollups`); this
is for a first catch-up after an upgrade or an import, which it shows as it goes.
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand

from agentloop.traces import rollups
from agentloop.traces.models import EvalRollup, Span, SpanRollup


class Command(BaseCommand):
    help = "Roll new spans up into the analytics totals (or rebuild them all)."

    def add_arguments(self, parser):
        parser.add_argument("--rebuild", action="store_true", help="forget and redo every rollup")
        parser.add_argument("--batch", type=int, default=rollups.BATCH, help="spans per batch")

    def handle(self, *args, rebuild, batch, **options):
        if rebuild:
            rollups.rebuild_forget()
        started = time.monotonic()
        waiting = Span.objects.filter(rollups.tail_q(rollups.mark())).count()
        done = 0
        while True:
            rolled = rollups.roll_up_new_spans(batch)
            if not rolled:
                break
            done += rolled
            rate = done / max(time.monotonic() - started, 1e-6)
            # Past the spans, what is left is eval rows of older hours (rollups.py).
            self.stdout.write(
                f"rolled up {done:,} of {waiting:,} spans ({rate:,.0f}/s)"
                if done <= waiting
                else f"rolled up {waiting:,} spans; computing eval rows of older hours"
            )
        rows, eval_rows = SpanRollup.objects.count(), EvalRollup.objects.count()
        self.stdout.write(
            self.style.SUCCESS(
                f"Up to date: {min(done, waiting):,} spans rolled up; {rows:,} rollup rows, "
                f"{eval_rows:,} eval rows."
            )
        )
