"""A time zone's UTC offsets and the moments they change, read from the zone's data.

The standard library answers "what is the offset at this instant" but lists no transitions,
so they are found here by sampling the offset once a day through a UTC year and bisecting
each change to the second (the zone data's resolution). Since 1970 no zone changes its offset
twice within a week (the closest two changes are 6.9 days apart, in America/Cambridge_Bay),
so a daily sample sees every one. A year's transitions are computed once per zone (half a
millisecond) and cached.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Final

SAMPLE_STEP_S: Final = 86_400
# How far ahead ``next_transition`` looks before it calls a zone's offset settled.
HORIZON_YEARS: Final = 8
# Years the daemon can meet (a next slot is at most a few years ahead of now).
FIRST_YEAR: Final = 1970
LAST_YEAR: Final = 2999


@dataclass(frozen=True, slots=True)
class Transition:
    """The offset changes from ``before`` to ``after`` at the UTC instant ``at``."""

    at: datetime
    before: timedelta
    after: timedelta

    @property
    def is_gap(self) -> bool:
        """Clocks go forward: the local times in ``[at + before, at + after)`` never occur."""
        return self.after > self.before


def offset_at(zone: tzinfo, instant: datetime) -> timedelta:
    """The zone's UTC offset at ``instant`` (an aware datetime)."""
    offset = instant.astimezone(zone).utcoffset()
    return offset if offset is not None else timedelta(0)


def _offset_at_timestamp(zone: tzinfo, timestamp: int) -> timedelta:
    offset = datetime.fromtimestamp(timestamp, zone).utcoffset()
    return offset if offset is not None else timedelta(0)


@functools.lru_cache(maxsize=8192)
def transitions_in(zone: tzinfo, year: int) -> tuple[Transition, ...]:
    """Every offset change of ``zone`` at an instant within the UTC year ``year``."""
    if not FIRST_YEAR <= year <= LAST_YEAR:
        return ()
    start = int(datetime(year, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp())
    found: list[Transition] = []
    previous_at, previous = start - 1, _offset_at_timestamp(zone, start - 1)
    at = start
    while previous_at < end - 1:
        offset = _offset_at_timestamp(zone, at)
        if offset != previous:
            changed = _bisect(zone, previous_at, at, previous)
            if changed < end:
                found.append(Transition(datetime.fromtimestamp(changed, UTC), previous, offset))
        previous_at, previous = at, offset
        at = min(at + SAMPLE_STEP_S, end - 1)
    return tuple(found)


def _bisect(zone: tzinfo, low: int, high: int, before: timedelta) -> int:
    """The first whole second in ``(low, high]`` whose offset is no longer ``before``."""
    while high - low > 1:
        middle = (low + high) // 2
        if _offset_at_timestamp(zone, middle) == before:
            low = middle
        else:
            high = middle
    return high


def next_transition(zone: tzinfo, instant: datetime) -> Transition | None:
    """The zone's first offset change strictly after ``instant``; ``None`` if it has none
    within ``HORIZON_YEARS`` (its offset is settled)."""
    year = instant.astimezone(UTC).year
    for candidate in range(year, year + HORIZON_YEARS + 1):
        for transition in transitions_in(zone, candidate):
            if transition.at > instant:
                return transition
    return None
