"""Schedules: parsing an admin's text into a schedule, and (pure) fire-time maths.

Nothing here reads the clock or a global random source: the moment and the random number
generator are arguments, so every function is deterministic under test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from random import Random
from typing import Final, Protocol

from heatup_daemon.errors import InvalidValue
from heatup_daemon.timing.cron import CronTimes, parse_cron

UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MIN_INTERVAL_S: Final = 10
MAX_INTERVAL_S: Final = 366 * 86400
MAX_SPEC_LENGTH: Final = 100
_MICROSECOND: Final = timedelta(microseconds=1)

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
    parse_cron(text)  # raises InvalidValue naming what is wrong
    return CronSchedule(text)


# --- fire times ---------------------------------------------------------------------------
#
# A session's slots are its schedule's nominal times; jitter is added to each slot
# separately, uniformly in [0, jitter), clamped so that a jittered time never reaches the
# next nominal time. The nominal times never move, however earlier slots were jittered
# (APScheduler 3's IntervalTrigger, given a jittered time as its previous fire time, drifts
# by the jitter every slot), and each is strictly later than the one before, through every
# daylight-saving change (``cron`` states the rule).


class NominalTimes(Protocol):
    """A schedule's nominal times, pure: no clock, no randomness."""

    def after(self, moment: datetime) -> datetime:
        """The first nominal time strictly after ``moment`` (aware; the answer in UTC)."""


@dataclass(frozen=True, slots=True)
class IntervalTimes:
    """``anchor`` plus whole periods, in absolute time (no daylight saving), computed in
    exact integer arithmetic (APScheduler's IntervalTrigger goes through float timestamps)."""

    anchor: datetime
    period: timedelta

    def after(self, moment: datetime) -> datetime:
        if moment < self.anchor:
            return self.anchor.astimezone(UTC)
        periods = (moment - self.anchor) // self.period + 1
        return (self.anchor + periods * self.period).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Slot:
    """One scheduled run: its nominal time and the jittered time it is due."""

    nominal: datetime
    due: datetime


def nominal_times(schedule: Schedule, timezone: tzinfo, anchor: datetime) -> NominalTimes:
    """The nominal times of ``schedule``: an interval counts whole periods from ``anchor``;
    a cron expression is read in ``timezone``."""
    if isinstance(schedule, IntervalSchedule):
        return IntervalTimes(anchor, timedelta(seconds=schedule.seconds))
    return CronTimes(parse_cron(schedule.expression), timezone)


def at_or_after(times: NominalTimes, moment: datetime) -> datetime:
    """The first nominal time at or after ``moment``."""
    return times.after(moment - _MICROSECOND)


def jittered(times: NominalTimes, nominal: datetime, jitter_s: float, rng: Random) -> Slot:
    """``nominal`` with its jitter: uniform in [0, min(jitter_s, gap to the next slot))."""
    if jitter_s <= 0:
        return Slot(nominal, nominal)
    gap_s = (times.after(nominal) - nominal).total_seconds()
    window_s = min(float(jitter_s), gap_s - 0.001)
    return Slot(nominal, nominal + timedelta(seconds=rng.uniform(0, max(window_s, 0.0))))


def slot_at_or_after(times: NominalTimes, moment: datetime, jitter_s: float, rng: Random) -> Slot:
    """The first slot whose nominal time is at or after ``moment``."""
    return jittered(times, at_or_after(times, moment), jitter_s, rng)
