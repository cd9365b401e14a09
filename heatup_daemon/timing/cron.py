"""Five-field crontab expressions: what they name, and when they fire in a time zone.

The fields (minute, hour, day of month, month, day of week) mean what crontab(5) of ISC
(Vixie) cron says: numbers, ranges ``a-b``, steps ``*/n`` and ``a-b/n``, lists, month and
weekday names; weekdays 0 and 7 are Sunday; and when both day fields are restricted (neither
starts with ``*``) a day matches if either does. APScheduler's ``CronTrigger`` does the field
arithmetic, over local wall times (read in UTC, where no clock ever changes); heatup gives
it the weekday numbers and the either-day rule, which APScheduler 3 reads otherwise (0 is
Monday there, and both day fields must match).

Daylight saving, by ISC cron's rule:

- an expression whose hour field starts with ``*`` (``*/15 * * * *``, ``0 * * * *``) fires by
  elapsed time: at every instant whose local time it names, so in both copies of a repeated
  hour and not at all in a skipped one;
- any other (a fixed hour) fires once at each local time it names: in a repeated hour at its
  first copy; and a named time that a skipped hour removes fires once, right after the gap
  (at the instant the clocks jump; several such times and a time named at that instant are
  the same one slot).

Each fire time is strictly later than the one before: ``CronTimes.after`` walks the zone's
constant-offset stretches (``zones``) instead of trusting a trigger across a change.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Final

from apscheduler.triggers.cron import CronTrigger

from heatup_daemon.errors import InvalidValue
from heatup_daemon.timing import zones

WEEKDAY_NAMES: Final = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# A wall time probed for "does this ever fire" (a crontab has no year: whatever fires at all
# fires within a few years of any date).
PROBE_FROM: Final = datetime(2001, 1, 1, tzinfo=UTC)
# Steps of the walk in ``CronTimes.after``: offset stretches and repeated times passed over.
MAX_STEPS: Final = 10_000
_MICROSECOND: Final = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class CronExpression:
    """A parsed crontab line. ``by_elapsed_time``: its hour field starts with ``*``."""

    text: str
    by_elapsed_time: bool
    triggers: tuple[CronTrigger, ...]

    def next_wall(self, after: datetime, *, inclusive: bool = False) -> datetime | None:
        """The first local wall time (naive) the expression names after ``after`` (or at it,
        with ``inclusive``); ``None`` if there is none."""
        moment = after.replace(tzinfo=UTC)
        if not inclusive:
            moment += _MICROSECOND
        fires = [t.get_next_fire_time(None, moment) for t in self.triggers]
        found = [fire for fire in fires if fire is not None]
        return min(found).replace(tzinfo=None) if found else None


@functools.lru_cache(maxsize=4096)
def parse_cron(text: str) -> CronExpression:
    """Parse a five-field crontab line (fields separated by single spaces). Raises
    ``InvalidValue`` with a one-line reason; never another exception."""
    fields = text.split(" ")
    if len(fields) != 5:
        raise InvalidValue(
            f"schedule {text!r} is neither an interval (90s, 15m, 6h, 1d, 1h30m) nor a cron "
            f"expression: it has {len(fields)} fields, cron has five "
            "(minute hour day month day-of-week)"
        )
    minute, hour, day, month, weekday = fields
    try:
        weekdays = _weekday_names(weekday.lower())
        either_day = not day.startswith("*") and not weekday.startswith("*")
        days = ((day, "*"), ("*", weekdays)) if either_day else ((day, weekdays),)
        triggers = tuple(
            CronTrigger(minute=minute, hour=hour, day=d, month=month, day_of_week=w, timezone=UTC)
            for d, w in days
        )
    except (ValueError, TypeError, KeyError, IndexError) as exc:  # InvalidValue included
        raise InvalidValue(f"schedule {text!r} is not a valid cron expression: {exc}") from None
    expression = CronExpression(text, hour.startswith("*"), triggers)
    if expression.next_wall(PROBE_FROM.replace(tzinfo=None), inclusive=True) is None:
        raise InvalidValue(f"schedule {text!r} never fires: no date matches it")
    return expression


def _weekday_names(field: str) -> str:
    """A crontab weekday field as APScheduler's weekday names (``*`` for every day)."""
    days: set[int] = set()
    for item in field.split(","):
        part, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise InvalidValue(f"weekday step {step_text!r} is not a positive number")
            step = int(step_text)
        if part == "*":
            first, last = 0, 7
        elif "-" in part:
            low, _, high = part.partition("-")
            first, last = _weekday(low), _weekday(high)
            if first > last:
                raise InvalidValue(f"weekday range {part!r} runs backwards")
        else:
            if slash:
                raise InvalidValue(f"weekday {item!r}: a step needs * or a range before it")
            first = last = _weekday(part)
        days.update(day % 7 for day in range(first, last + 1, step))
    if len(days) == 7:
        return "*"
    return ",".join(WEEKDAY_NAMES[day] for day in sorted(days))


def _weekday(text: str) -> int:
    if text.isdigit() and int(text) <= 7:
        return int(text)
    if text in WEEKDAY_NAMES:
        return WEEKDAY_NAMES.index(text)
    raise InvalidValue(f"weekday {text!r} is not 0-7 (0 and 7 are Sunday) or sun-sat")


@dataclass(frozen=True, slots=True)
class CronTimes:
    """The fire times of ``expression`` in ``zone``, by the rule above."""

    expression: CronExpression
    zone: tzinfo

    def after(self, moment: datetime) -> datetime:
        """The first fire time strictly after ``moment`` (aware; the answer is in UTC)."""
        expression, zone = self.expression, self.zone
        at, inclusive = moment.astimezone(UTC), False
        for _ in range(MAX_STEPS):
            offset = zones.offset_at(zone, at)
            change = zones.next_transition(zone, at)
            wall = expression.next_wall(_naive(at + offset), inclusive=inclusive)
            if wall is None:
                break
            instant = wall.replace(tzinfo=UTC) - offset
            if change is None or instant < change.at:
                if expression.by_elapsed_time or not _seen_before(zone, wall, instant):
                    return instant
                at, inclusive = instant, False  # a repeated time's second copy
                continue
            if not expression.by_elapsed_time and change.is_gap:
                skipped = expression.next_wall(_naive(change.at + change.before), inclusive=True)
                if skipped is not None and skipped < _naive(change.at + change.after):
                    return change.at
            at, inclusive = change.at, True
        raise InvalidValue(
            f"schedule {expression.text!r} has no fire time after {moment:%Y-%m-%d %H:%M}Z"
        )


def _naive(instant: datetime) -> datetime:
    return instant.replace(tzinfo=None)


def _seen_before(zone: tzinfo, wall: datetime, instant: datetime) -> bool:
    """Whether the local time ``wall`` already occurred before ``instant`` (its first copy,
    in a repeated hour)."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    return first < instant and _naive(first.astimezone(zone)) == wall
