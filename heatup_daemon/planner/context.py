"""What a planner is told about a session: its ``PlanContext``, built from the database's
``PlanningFacts`` in the session's own time zone."""

from __future__ import annotations

from datetime import datetime

from heatup_daemon.planner.model import PlanContext
from heatup_daemon.records import JoinLimits, PastRun, PlanningFacts
from heatup_daemon.session import Session


def plan_context(
    session: Session, facts: PlanningFacts, now: datetime, limits: JoinLimits
) -> PlanContext:
    """What the planner is told: the pool, what the session joined, its last runs in its
    local time, and how many joins ``limits`` leave it (and each channel) right now."""
    return PlanContext(
        gateway_session_id=session.gateway_session_id,
        pool=facts.pool,
        joined=facts.joined,
        local_time=now.astimezone(session.timezone),
        recent_runs=tuple(summary(run, session) for run in facts.recent_runs),
        join_allowance=limits.joins_left(facts.joins_last_24h),
        channel_room={
            channel: limits.room(count) for channel, count in facts.channel_joins_last_hour.items()
        },
        room_per_channel=limits.per_channel_hour,
    )


def summary(run: PastRun, session: Session) -> str:
    """One line about a finished run for the prompt, e.g. ``Tue 21:40 succeeded; joined
    @bbcnews; read @nasa``."""
    parts = [f"{run.started_at.astimezone(session.timezone):%a %H:%M} {run.status}"]
    if run.joined:
        parts.append("joined " + " ".join(f"@{name}" for name in run.joined))
    if run.read:
        parts.append("read " + " ".join(f"@{name}" for name in run.read))
    return "; ".join(parts)
