"""How warm a session's account is: the joins the ledger grants it (``reserve_places``, the
one rule both stores apply), and its warmth report as the API, the console and the CLI show
it, assembled in one place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from heatup_daemon.enums import JoinRefusal
from heatup_daemon.ramp import Ramp, join_verdict
from heatup_daemon.records import JoinLimits, WarmthFacts
from heatup_daemon.session import SessionRecord, age_days, born_at
from heatup_daemon.stores import Registry
from heatup_daemon.validation import handle

# The report's window: joins and runs of the last week.
WARMTH_WINDOW: Final = timedelta(days=7)


def reserve_places(
    channels: Sequence[str],
    channel_ids: Mapping[str, int],
    session_joins: int,
    channel_joins: Mapping[int, int],
    limits: JoinLimits,
) -> tuple[dict[str, JoinRefusal | None], list[int]]:
    """The join ledger's verdict on each of a plan's ``channels``, in the plan's order, and
    the channels (by id, each once) it grants a place. ``channel_ids`` holds the channels
    that exist (another is gone); ``session_joins`` counts the places the account holds in
    the ramp's window, ``channel_joins`` each channel's in the pace's window (none where it
    is missing), the run's own places left out of both. Each grant takes one of the
    account's joins left and one of the channel's places this hour."""
    left = limits.joins_left(session_joins)
    room = {channel_id: limits.room(count) for channel_id, count in channel_joins.items()}
    verdicts: dict[str, JoinRefusal | None] = {}
    granted: dict[int, None] = {}
    for channel in channels:
        channel_id = channel_ids.get(channel)
        verdicts[channel] = join_verdict(channel_id, left, room, limits)
        if verdicts[channel] is None:
            assert channel_id is not None
            room[channel_id] = room.get(channel_id, limits.per_channel_hour) - 1
            left -= 1
            granted[channel_id] = None
    return verdicts, list(granted)


@dataclass(frozen=True, slots=True)
class Warmth:
    """How warm a session is: its age and ramp stage, what it joined, how its runs went."""

    age_days: int
    ramp_stage: str
    joins_per_day: int
    joins_last_24h: int
    joins_last_7d: int
    channels_joined: tuple[str, ...]  # as @username
    runs_last_7d: dict[str, int]
    last_flood_wait_at: datetime | None
    last_flood_wait_s: int | None
    state: str
    state_reason: str | None
    next_run_at: datetime | None


def warmth(record: SessionRecord, facts: WarmthFacts, ramp: Ramp, now: datetime) -> Warmth:
    """The warmth report of ``record`` (a value heatup cannot read counts as absent)."""
    born = born_at(_time(record.account_created_at), _time(record.created_at)) or now
    age = age_days(born, now)
    flood_s = record.flood_wait_s if isinstance(record.flood_wait_s, int) else None
    return Warmth(
        age_days=age,
        ramp_stage=ramp.label(ramp.stage(age)),
        joins_per_day=ramp.joins_per_day(age),
        joins_last_24h=facts.joins_last_24h,
        joins_last_7d=facts.joins_last_7d,
        channels_joined=tuple(handle(channel) for channel in facts.channels_joined),
        runs_last_7d=facts.runs_last_7d,
        last_flood_wait_at=_time(record.flood_wait_at),
        last_flood_wait_s=flood_s,
        state=str(record.state),
        state_reason=record.state_reason,
        next_run_at=_time(record.next_run_at),
    )


async def report(
    registry: Registry, gateway_session_id: int, ramp: Ramp, now: datetime
) -> tuple[SessionRecord, Warmth]:
    """The registered session's row and its warmth report (``NotFound`` unless registered)."""
    record = await registry.get_session(gateway_session_id)
    facts = await registry.warmth_facts(record.id, now)
    return record, warmth(record, facts, ramp, now)


def _time(value: object) -> datetime | None:
    return value if isinstance(value, datetime) else None
