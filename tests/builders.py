"""Valid values the tests build often: a session as an admin registers it, a join's record."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from heatup_daemon.enums import ActionKind, Outcome
from heatup_daemon.records import ActionRecord
from heatup_daemon.validation import SessionSpec, validate_session


def session_spec(
    gateway_id: int,
    schedule: str = "1h",
    *,
    jitter_seconds: int = 0,
    timezone: str = "UTC",
    **values: Any,
) -> SessionSpec:
    """A validated session with no label; ``values`` set further fields (e.g.
    ``account_created_at``)."""
    spec = validate_session(
        gateway_session_id=gateway_id,
        schedule=schedule,
        jitter_seconds=jitter_seconds,
        timezone=timezone,
        label=None,
    )
    return replace(spec, **values) if values else spec


def join_record(seq: int, channel: str, outcome: Outcome, at: datetime) -> ActionRecord:
    """A join action's end: ``ok``, or failed as a private channel."""
    return ActionRecord(
        seq=seq,
        kind=ActionKind.JOIN_CHANNEL,
        channel=channel,
        planned_duration_s=None,
        actual_duration_s=0.5,
        started_at=at,
        finished_at=at,
        outcome=outcome,
        error_code=None if outcome is Outcome.OK else "CHANNEL_PRIVATE",
        error_text=None,
    )
