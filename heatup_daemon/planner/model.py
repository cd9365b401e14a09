"""Plans: what a planner is given, what it returns, and the one shape of a planned action.

``PlannedAction`` is that shape everywhere: the strict JSON schema the LLM is asked to fill,
the actions of a validated plan, the plan a run row stores and the plan the API answers with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from heatup_daemon.enums import ActionKind, JoinRefusal, PlanSource
from heatup_daemon.records import PoolChannel, StoredPlan

MIN_ACTIONS: Final = 3
MAX_ACTIONS: Final = 7
MAX_REASON_LENGTH: Final = 200


class PlannedAction(BaseModel):
    """One step of a plan. In a validated plan ``channel`` is a pool channel's canonical
    username (the LLM may write it with ``@``); ``duration_seconds`` is set for the kinds
    that last (reads and idles) and ``None`` otherwise."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: ActionKind
    channel: str | None = Field(description="a pool channel's @username, or null")
    duration_seconds: float | None = Field(description="seconds, for read_messages and idle")
    reason: str = Field(description="a few words on why")


def step(
    action: ActionKind,
    channel: str | None = None,
    duration_seconds: float | None = None,
    reason: str = "",
) -> PlannedAction:
    return PlannedAction(
        action=action, channel=channel, duration_seconds=duration_seconds, reason=reason
    )


class PlanOut(BaseModel):
    """The LLM's whole answer."""

    model_config = ConfigDict(extra="forbid")

    actions: list[PlannedAction]


@dataclass(frozen=True, slots=True)
class PlanContext:
    """What a planner knows about one session when it plans a run."""

    gateway_session_id: int
    pool: tuple[PoolChannel, ...]
    joined: frozenset[str]
    local_time: datetime
    # One line per finished recent run, in the session's local time.
    recent_runs: tuple[str, ...] = ()
    # How many joins this plan may hold (the account's ramp), and how many more joins each
    # channel may take this hour (the pool's pace; a channel not named has full room).
    join_allowance: int = MAX_ACTIONS
    channel_room: Mapping[str, int] = field(default_factory=dict)
    room_per_channel: int = MAX_ACTIONS

    @property
    def unjoined(self) -> tuple[PoolChannel, ...]:
        return tuple(c for c in self.pool if c.username not in self.joined)

    def room(self, channel: str) -> int:
        return self.channel_room.get(channel, self.room_per_channel)

    @property
    def joinable(self) -> tuple[PoolChannel, ...]:
        """Unjoined channels this plan may join now (the allowance and the pace permitting)."""
        if self.join_allowance <= 0:
            return ()
        return tuple(c for c in self.unjoined if self.room(c.username) > 0)


@dataclass(frozen=True, slots=True)
class Plan:
    actions: tuple[PlannedAction, ...]
    source: PlanSource
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Why the fallback planned this run (no LLM configured, budget spent, an error...).
    fallback_reason: str | None = None
    notes: tuple[str, ...] = field(default=())
    # Joins taken out to look after the account, by reason (ramp, channel_pace).
    joins_dropped: tuple[tuple[JoinRefusal, int], ...] = ()

    def document(self) -> dict[str, Any]:
        """The plan as JSON, as a run row stores it."""
        return {
            "actions": [action.model_dump(mode="json") for action in self.actions],
            "fallback_reason": self.fallback_reason,
            "notes": list(self.notes),
        }

    def stored(self) -> StoredPlan:
        return StoredPlan(
            self.source, self.model, self.prompt_tokens, self.completion_tokens, self.document()
        )
