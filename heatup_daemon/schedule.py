"""Schedules: parsing an admin's text into a schedule, and (pure) fire-time maths.

Nothing here reads the clock or a global random source: the moment and the random number
generator are arguments, so every function is deterministic under test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from random import Random
from typing import Final

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from heatup_daemon.errors import InvalidValue

UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MIN_INTERVAL_S: Final = 10
MAX_INTERVAL_S: Final = 366 * 86400
MAX_SPEC_LENGTH: Final = 100
CRON_PROBE_FROM: Final = datetime(2001, 1, 1, tzinfo=UTC)

_INTERVAL_RE: Final = re.compile(r"(?:[0-9]{1,7}[smhd])+")
_INTERVAL_PART_RE: Final = re.compile(r"([0-9]+)([smhd])")


@dataclass(frozen=True, slots=True)
class IntervalSchedule:
    """Every ``seconds`` seconds from an anchor."""

    seconds: int

    @property
    def text(self) -> str:
        return format_interval(self.seconds)


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A five-field crontab expression (minute hour day month day-of-week)."""

    expression: str

    @property
    def text(self) -> str:
        return self.expression


Schedule = IntervalSchedule | CronSchedule


def format_interval(seconds: int) -> str:
    """The shortest text ``parse_schedule`` reads back as ``seconds`` (``5400`` -> ``1h30m``)."""
    parts = []
    remaining = seconds
    for unit, size in sorted(UNIT_SECONDS.items(), key=lambda item: -item[1]):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def parse_schedule(spec: str) -> Schedule:
    """Parse an interval (``90s``, ``15m``, ``6h``, ``1d``, ``1h30m``) or a crontab line.

    Raises ``InvalidValue`` with a one-line reason for anything else; never another exception.
    """
    text = " ".join(spec.split())
    if not text:
        raise InvalidValue("schedule is empty: give an interval like 6h or a cron expression")
    if len(text) > MAX_SPEC_LENGTH:
        raise InvalidValue(f"schedule is longer than {MAX_SPEC_LENGTH} characters")
    if " " not in text:
        return _parse_interval(text)
    return _parse_cron(text)


def _parse_interval(text: str) -> IntervalSchedule:
    lowered = text.lower()
    if not _INTERVAL_RE.fullmatch(lowered):
        raise InvalidValue(
            f"schedule {text!r} is neither an interval (90s, 15m, 6h, 1d, 1h30m) "
            "nor a five-field cron expression"
        )
    seconds = sum(
        int(count) * UNIT_SECONDS[unit] for count, unit in _INTERVAL_PART_RE.findall(lowered)
    )
    if not MIN_INTERVAL_S <= seconds <= MAX_INTERVAL_S:
        raise InvalidValue(
            f"schedule {text!r} is an interval of {seconds} s; allowed: "
            f"{format_interval(MIN_INTERVAL_S)} to {format_interval(MAX_INTERVAL_S)}"
        )
    return IntervalSchedule(seconds)


def _parse_cron(text: str) -> CronSchedule:
    fields = text.split(" ")
    if len(fields) != 5:
        raise InvalidValue(
            f"schedule {text!r} is neither an interval (90s, 15m, 6h, 1d, 1h30m) nor a cron "
            f"expression: it has {len(fields)} fields, cron has five "
            "(minute hour day month day-of-week)"
        )
    try:
        trigger = CronTrigger.from_crontab(text, timezone="UTC")
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise InvalidValue(f"schedule {text!r} is not a valid cron expression: {exc}") from None
    # A crontab has no year, so whatever fires at all fires within a few years of any date.
    if trigger.get_next_fire_time(None, CRON_PROBE_FROM) is None:
        raise InvalidValue(f"schedule {text!r} never fires: no date matches it")
    return CronSchedule(text)


# --- fire times ---------------------------------------------------------------------------
#
# A session's slots are the fire times of an APScheduler trigger built *without* jitter:
# the nominal times. Jitter is added to each slot separately, uniformly in [0, jitter),
# clamped so that a jittered time never reaches the next nominal time. The nominal times
# never move, however earlier slots were jittered: APScheduler 3's IntervalTrigger, given
# the jittered time as its previous fire time, would drift by the jitter every slot.


@dataclass(frozen=True, slots=True)
class Slot:
    """One scheduled run: its nominal time and the jittered time it is due."""

    nominal: datetime
    due: datetime


def make_trigger(schedule: Schedule, timezone: tzinfo, anchor: datetime) -> BaseTrigger:
    """The APScheduler trigger of ``schedule``. Interval slots are ``anchor`` plus whole
    periods, counted in absolute seconds (so in UTC: no DST jumps); cron fields are read in
    ``timezone``."""
    if isinstance(schedule, IntervalSchedule):
        return IntervalTrigger(seconds=schedule.seconds, start_date=anchor, timezone=UTC)
    return CronTrigger.from_crontab(schedule.expression, timezone=timezone)


def _fire(fire: datetime | None, after: datetime) -> datetime:
    if fire is None:
        raise InvalidValue(f"the schedule has no fire time after {after:%Y-%m-%d %H:%M}Z")
    return fire.astimezone(UTC)


def first_nominal_at_or_after(trigger: BaseTrigger, moment: datetime) -> datetime:
    return _fire(trigger.get_next_fire_time(None, moment), moment)


def first_nominal_after(trigger: BaseTrigger, moment: datetime) -> datetime:
    """The first nominal slot strictly after ``moment``."""
    return first_nominal_at_or_after(trigger, moment + timedelta(microseconds=1))


def nominal_after(trigger: BaseTrigger, nominal: datetime) -> datetime:
    """The nominal slot that follows ``nominal``."""
    return _fire(trigger.get_next_fire_time(nominal, nominal), nominal)


def jittered(trigger: BaseTrigger, nominal: datetime, jitter_s: float, rng: Random) -> Slot:
    """``nominal`` with its jitter: uniform in [0, min(jitter_s, gap to the next slot))."""
    if jitter_s <= 0:
        return Slot(nominal, nominal)
    gap_s = (nominal_after(trigger, nominal) - nominal).total_seconds()
    window_s = min(float(jitter_s), gap_s - 0.001)
    return Slot(nominal, nominal + timedelta(seconds=rng.uniform(0, max(window_s, 0.0))))


def slot_at_or_after(trigger: BaseTrigger, moment: datetime, jitter_s: float, rng: Random) -> Slot:
    """The first slot whose nominal time is at or after ``moment``."""
    return jittered(trigger, first_nominal_at_or_after(trigger, moment), jitter_s, rng)


def slot_after(trigger: BaseTrigger, nominal: datetime, jitter_s: float, rng: Random) -> Slot:
    """The slot following the one at ``nominal``."""
    return jittered(trigger, nominal_after(trigger, nominal), jitter_s, rng)
