"""Looking after accounts: how many channels a session may join, by its age, and how many
joins a pool channel may take in an hour from the whole pool.

A session settling in joins few channels at first and more as it ages (``[ramp] stages``:
the most joins in any 24 hours from each age in days on). A channel gets at most
``pool.max_joins_per_channel_per_hour`` joins in any hour across every session and node. Both
are counted in the database's join ledger, so they hold across restarts and nodes; a plan's
joins are reserved in the ledger, atomically, before the run carries them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from heatup_daemon.enums import JoinRefusal
from heatup_daemon.records import JoinLimits
from heatup_daemon.session import Session

# The windows the limits count in: the ramp in any 24 hours, the pace in any hour.
RAMP_WINDOW: Final = timedelta(days=1)
PACE_WINDOW: Final = timedelta(hours=1)

# The default ramp: from day 0 one join a day, from day 1 two, from day 3 three, from day 7
# five, from day 30 eight.
DEFAULT_STAGES: Final = ((0, 1), (1, 2), (3, 3), (7, 5), (30, 8))


@dataclass(frozen=True, slots=True)
class Ramp:
    """``stages``: (first age in days, joins per 24 h), ascending, the first at day 0."""

    stages: tuple[tuple[int, int], ...] = DEFAULT_STAGES

    def stage(self, age_days: int) -> int:
        """The index of the stage an account of ``age_days`` is in."""
        index = 0
        for i, (first_day, _) in enumerate(self.stages):
            if age_days >= first_day:
                index = i
        return index

    def joins_per_day(self, age_days: int) -> int:
        return self.stages[self.stage(age_days)][1]

    def label(self, index: int) -> str:
        """A stage's name, e.g. ``days_3_6`` or ``days_30_plus`` (a metric label value)."""
        first = self.stages[index][0]
        if index + 1 == len(self.stages):
            return f"days_{first}_plus"
        last = self.stages[index + 1][0] - 1
        return f"day_{first}" if first == last else f"days_{first}_{last}"

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.label(i) for i in range(len(self.stages)))


@dataclass(frozen=True, slots=True)
class JoinPolicy:
    """The ramp and the pool's pace together: a session's join limits at a moment."""

    ramp: Ramp
    per_channel_hour: int

    def limits(self, session: Session, now: datetime) -> JoinLimits:
        per_day = self.ramp.joins_per_day(session.age_days(now))
        return JoinLimits(per_day=per_day, per_channel_hour=self.per_channel_hour)


def stage_counts(ramp: Ramp, aged: list[int]) -> dict[str, int]:
    """Sessions per ramp stage, from how many are at least each stage's first day old."""
    counts = {}
    for index, at_least in enumerate(aged):
        older = aged[index + 1] if index + 1 < len(aged) else 0
        counts[ramp.label(index)] = at_least - older
    return counts


def join_verdict(
    channel_id: int | None, left: int, room: dict[int, int], limits: JoinLimits
) -> JoinRefusal | None:
    """Why a join may not be reserved (``None``: it may): ``left`` joins of the account's
    ramp remain, ``room`` holds each channel's places left this hour."""
    if channel_id is None:
        return JoinRefusal.GONE
    if left <= 0:
        return JoinRefusal.RAMP
    if room.get(channel_id, limits.per_channel_hour) <= 0:
        return JoinRefusal.CHANNEL_PACE
    return None
