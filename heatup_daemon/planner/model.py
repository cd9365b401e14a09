"""Plans: what a planner is given, what it returns, and the shape asked of an LLM."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

ActionKind = Literal["join_channel", "read_messages", "browse_dialogs", "idle"]
ACTION_KINDS: Final[tuple[ActionKind, ...]] = (
    "join_channel",
    "read_messages",
    "browse_dialogs",
    "idle",
)
CHANNEL_KINDS: Final = frozenset({"join_channel", "read_messages"})
MIN_ACTIONS: Final = 3
MAX_ACTIONS: Final = 7
MAX_REASON_LENGTH: Final = 200

PlanSource = Literal["llm", "fallback"]


@dataclass(frozen=True, slots=True)
class PoolChannel:
    username: str
    category: str | None = None
    title: str | None = None


@dataclass(frozen=True, slots=True)
class PlanContext:
    """What a planner knows about one session when it plans a run."""

    gateway_session_id: int
    pool: tuple[PoolChannel, ...]
    joined: frozenset[str]
    local_time: datetime
    recent_runs: tuple[str, ...] = ()

    @property
    def unjoined(self) -> tuple[PoolChannel, ...]:
        return tuple(c for c in self.pool if c.username not in self.joined)


@dataclass(frozen=True, slots=True)
class Action:
    """One validated step: ``channel`` for joins and reads, ``duration_s`` for reads and idles."""

    kind: ActionKind
    channel: str | None = None
    duration_s: float | None = None
    reason: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "action": self.kind,
            "channel": f"@{self.channel}" if self.channel else None,
            "duration_seconds": self.duration_s,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Plan:
    actions: tuple[Action, ...]
    source: PlanSource
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Why the fallback planned this run (no LLM configured, budget spent, an error...).
    fallback_reason: str | None = None
    notes: tuple[str, ...] = field(default=())

    def as_json(self) -> list[dict[str, Any]]:
        return [action.as_json() for action in self.actions]


class PlannedAction(BaseModel):
    """One action as the LLM is asked to write it (strict JSON schema: all keys present)."""

    model_config = ConfigDict(extra="forbid")

    action: ActionKind
    channel: str | None = Field(description="@username from the pool, or null")
    duration_seconds: float | None = Field(description="seconds, for read_messages and idle")
    reason: str = Field(description="a few words on why")


class PlanOut(BaseModel):
    """The LLM's whole answer."""

    model_config = ConfigDict(extra="forbid")

    actions: list[PlannedAction]
