"""When an automation is due: cron expressions in a time zone, metric cadences.

    check_cron(expression, time_zone)        ValidationError with a clear message
    next_cron_fire(expression, tz, after)    the first fire strictly after `after` (UTC)
    next_cron_fires(expression, tz, after, n)  for the edit form's preview
    latest_cron_fire(expression, tz, at)     the last fire at or before `at`
    next_metric_evaluation(every, after)     the next multiple of `every` minutes

Cron is evaluated in the automation's time zone (croniter with zoneinfo), so
"0 9 * * *" in Europe/Berlin is 09:00 local on both sides of a DST change. A
wall time that happens twice (autumn) fires once, at its first occurrence; one
that does not exist (02:30 on the spring-forward night) fires an hour later.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import CroniterBadCronError, CroniterBadDateError, croniter
from django.core.exceptions import ValidationError

EVERY_MINUTES = (1, 5, 10, 15, 30, 60)


def zone(time_zone: str) -> ZoneInfo:
    if not time_zone or time_zone not in _zones():
        raise ValidationError(
            f"{time_zone or '(empty)'} is not a time zone; use e.g. Europe/Berlin or UTC."
        )
    try:
        return ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            f"{time_zone} is not a time zone; use e.g. Europe/Berlin or UTC."
        ) from None


_ZONES: set[str] | None = None


def _zones() -> set[str]:
    global _ZONES
    if _ZONES is None:
        _ZONES = set(available_timezones()) | {"UTC"}
    return _ZONES


def check_cron(expression: str, time_zone: str = "UTC") -> None:
    expression = (expression or "").strip()
    if not expression:
        raise ValidationError("Enter a cron expression, e.g. */10 * * * * (every 10 minutes).")
    if len(expression.split()) != 5:
        raise ValidationError(
            f"“{expression}” is not a cron expression: it needs 5 fields "
            "(minute hour day-of-month month day-of-week), e.g. 0 9 * * 1-5."
        )
    if not croniter.is_valid(expression):
        raise ValidationError(
            f"“{expression}” is not a valid cron expression (minute hour day-of-month month "
            "day-of-week), e.g. 0 9 * * 1-5."
        )
    zone(time_zone)
    try:
        next_cron_fire(expression, time_zone, datetime.now(UTC))
    except (CroniterBadDateError, CroniterBadCronError):
        raise ValidationError(f"“{expression}” never fires.") from None


def _aware(wall: datetime, tz: ZoneInfo) -> datetime:
    # fold=0: a repeated wall time (autumn) is its first occurrence, a missing one
    # (spring) is read with the offset before the change, i.e. an hour later.
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


def next_cron_fire(expression: str, time_zone: str, after: datetime) -> datetime:
    """Cron on the local wall clock: each matching wall time fires once."""
    tz = zone(time_zone)
    wall = after.astimezone(tz).replace(tzinfo=None)
    schedule = croniter(expression, wall)
    for _ in range(1000):
        fire = _aware(schedule.get_next(datetime), tz)
        if fire > after:
            return fire
    raise CroniterBadDateError(f"{expression} never fires")


def next_cron_fires(expression: str, time_zone: str, after: datetime, n: int = 5) -> list[datetime]:
    fires, moment = [], after
    for _ in range(n):
        moment = next_cron_fire(expression, time_zone, moment)
        fires.append(moment)
    return fires


def latest_cron_fire(expression: str, time_zone: str, at: datetime) -> datetime:
    """The last scheduled fire at or before `at` (the one a catch-up run stands for)."""
    tz = zone(time_zone)
    wall = (at + timedelta(minutes=1)).astimezone(tz).replace(tzinfo=None, second=0, microsecond=0)
    schedule = croniter(expression, wall)
    for _ in range(1000):
        fire = _aware(schedule.get_prev(datetime), tz)
        if fire <= at:
            return fire
    raise CroniterBadDateError(f"{expression} never fires")


def next_metric_evaluation(every_minutes: int, after: datetime) -> datetime:
    """The next whole multiple of `every_minutes` since the epoch strictly after `after`:
    aligned slots, so every scheduler computes the same fire key."""
    step = every_minutes * 60
    seconds = int(after.timestamp())
    return datetime.fromtimestamp((seconds // step + 1) * step, UTC)
