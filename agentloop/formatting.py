"""The one way pages write times, durations, counts and money (issue 15).

- A moment: `2026-12-03 07:33 CET` — ISO date, 24-hour time, the zone's
  abbreviation, in the viewer's time zone (their setting, agentloop.teams
  UserSettings; UTC until they choose). `time` style: `07:33:12` (transcripts);
  `seconds`: `2026-12-03 07:33:12 CET`; `precise`: `… 07:33:12.345 CET` (spans).
  Pages wrap it in <time datetime="…UTC ISO…">, so static/js/time.js can
  show a pushed fragment (rendered once for every watcher, in UTC) in the
  viewer's zone too.
- A duration: `0.4 s` under 10 s (one decimal, so sub-second runs are not
  "0 s"), `12 s`, `3 min 05 s`, `2 h 05 min`, `3 d 4 h`.
- A count: `1 turn`, `2 turns`, `12,345 spans`.
- Money: `$0.42`, `$1,234.50`; `$0.0042` below a cent (never a bare `$0.00`); — for none.

Plain functions here (views and actions use them too); the template tags and
filters in agentloop/teams/templatetags/formatting.py call them, and are
template builtins (settings.TEMPLATES), so every page has them without a load.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal

from django.utils import timezone

DATE_TIME = "%Y-%m-%d %H:%M"
TIME = "%H:%M:%S"
EMPTY = "—"


def zone_named(name: str | None) -> tzinfo:
    """The zone of that IANA name, or UTC for none or an unknown one."""
    try:
        return zoneinfo.ZoneInfo(name) if name else UTC
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return UTC


def moment(value: datetime | None, style: str = "", zone: tzinfo | None = None) -> str:
    """`2026-12-03 07:33 CET` (style "time": `07:33:12`), in `zone` or the active one."""
    if value is None:
        return EMPTY
    local = timezone.localtime(value, zone or timezone.get_current_timezone())
    if style == "time":
        return local.strftime(TIME)
    if style == "seconds":
        return f"{local.strftime('%Y-%m-%d %H:%M:%S')} {local.tzname()}"
    if style == "precise":  # spans: to the millisecond
        millis = f"{local.microsecond // 1000:03d}"
        return f"{local.strftime('%Y-%m-%d %H:%M:%S')}.{millis} {local.tzname()}"
    return f"{local.strftime(DATE_TIME)} {local.tzname()}"


def duration(value) -> str:
    """Seconds (or a timedelta) as a person reads them; see the module docstring."""
    if value is None or value == "":
        return EMPTY
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    seconds = max(seconds, 0.0)
    if seconds < 9.95:  # would round to "10.0 s"
        return f"{seconds:.1f} s"
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def count(n, noun: str, plural: str | None = None) -> str:
    """`1 turn`, `2 turns`, `12,345 spans`."""
    n = int(n or 0)
    word = noun if n == 1 else (plural or f"{noun}s")
    return f"{n:,} {word}"


def money(value) -> str:
    if value is None or value == "":
        return EMPTY
    amount = Decimal(str(value))
    if 0 < abs(amount) < Decimal("0.01"):
        return f"${amount:.4f}"  # a fraction of a cent is not "$0.00"
    return f"${amount:,.2f}"
