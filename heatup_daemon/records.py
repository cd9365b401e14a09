"""The records heatup's parts and its stores exchange: plain frozen dataclasses, so that
nothing outside ``db`` sees an ORM object. The ports that pass them are in ``ports``."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final

from heatup_daemon.enums import (
    ActionCode,
    ActionKind,
    Outcome,
    PlanSource,
    RunStatus,
    SkipCause,
    Standing,
    Trigger,
)
from heatup_daemon.errors import InvalidValue
from heatup_daemon.session import Session, SessionRecord, parse_enabled
from heatup_daemon.validation import handle, validate_channel

# An action's row written before its gateway call (``RunRecorder.start_call``): the outcome
# a crash would leave. While its run lasts, the call is under way.
IN_FLIGHT: Final = ActionCode.IN_FLIGHT
UNDER_WAY: Final = "in flight: the gateway call is under way"

# --- nodes --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Node:
    """A process that runs runs, as its lease row names it: ``id`` is the lease's, ``name``
    the ``node_name`` its runs are recorded with."""

    id: int
    name: str


@dataclass(frozen=True, slots=True)
class LeaseReading:
    """What a lease write returns: the node, and the database's clock when it was written."""

    node: Node
    database_now: datetime


# --- runs and slots -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    """A run whose ``running`` row exists: claimed for a slot, or started by the API or CLI."""

    id: int
    session: Session
    trigger: Trigger
    due_at: datetime
    # When the row was written ``running``.
    started_at: datetime
    scheduled_for: datetime | None = None


@dataclass(frozen=True, slots=True)
class RunInFlight:
    """A ``running`` row of a node, as the database holds it: to adopt one whose start the
    node could not confirm (the answer to its commit was lost)."""

    id: int
    trigger: Trigger
    due_at: datetime
    started_at: datetime
    scheduled_for: datetime | None
    record: SessionRecord | None  # None: an admin removed the session meanwhile


@dataclass(frozen=True, slots=True)
class SlotRow:
    """A ``warmup_runs`` row a claim writes for one slot (``running``), or for a slot and the
    ones up to ``next_slot_at`` that will not run (``skipped``, with the reason)."""

    status: RunStatus
    scheduled_for: datetime
    due_at: datetime
    next_slot_at: datetime
    error: str | None = None
    cause: SkipCause | None = None  # why a skipped row was skipped


@dataclass(frozen=True, slots=True)
class Decision:
    """What reconciling or claiming decided for one ``sessions`` row.

    ``applied_key`` is stored as the row's applied key: the key it was decided on, or
    ``None`` to look at the row again on the next reconcile pass (a bad value in one of
    heatup's own columns). ``rows`` are the slot rows to write; a ``running`` one starts a
    run of ``session``. ``refused``: the database refused what was decided for the row, and
    this (no slot, the reason) was stored instead.
    """

    record: SessionRecord
    next_nominal_at: datetime | None
    next_run_at: datetime | None
    invalid_reason: str | None
    applied_key: str | None
    rows: tuple[SlotRow, ...] = ()
    session: Session | None = None
    refused: bool = False

    @property
    def changes_row(self) -> bool:
        record = self.record
        return (
            self.next_nominal_at != record.next_nominal_at
            or self.next_run_at != record.next_run_at
            or self.invalid_reason != record.invalid_reason
            or self.applied_key != record.applied_key
        )


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of one claim transaction: a decision per row it locked, and the runs
    whose ``running`` row it inserted."""

    decisions: tuple[Decision, ...]
    runs: tuple[Run, ...]


@dataclass(frozen=True, slots=True)
class Reconciled:
    """The outcome of one reconcile batch: the decisions stored, how many rows were looked
    at, and the highest id among them (the next batch starts after it)."""

    decisions: tuple[Decision, ...]
    examined: int
    last_id: int


# --- history --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """One executed action, as the executor reports it and the history shows it. ``channel``
    is the canonical username (lower case, no ``@``); ``shown()`` is the record as outputs
    write it."""

    seq: int
    kind: ActionKind
    channel: str | None
    planned_duration_s: float | None
    actual_duration_s: float | None
    started_at: datetime
    finished_at: datetime
    outcome: Outcome
    error_code: str | None = None
    error_text: str | None = None
    gateway_latency_s: float | None = None

    def shown(self, *, run_running: bool = False) -> ActionRecord:
        """The record as outputs write it; while its run lasts, an action whose row is still
        the in-flight one (the outcome a crash would leave) says that its call is under way."""
        shown = self if self.channel is None else replace(self, channel=handle(self.channel))
        if run_running and self.error_code == IN_FLIGHT:
            shown = replace(shown, error_text=UNDER_WAY)
        return shown


@dataclass(frozen=True, slots=True)
class StoredPlan:
    """A plan as a run row keeps it: ``document`` is its JSON (actions, notes, fallback
    reason)."""

    source: PlanSource
    model: str | None
    prompt_tokens: int
    completion_tokens: int
    document: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RunView:
    id: int
    session_id: int | None
    gateway_session_id: int
    trigger: Trigger
    scheduled_for: datetime | None
    next_slot_at: datetime | None
    due_at: datetime
    status: RunStatus
    plan_source: PlanSource | None
    plan_model: str | None
    plan: dict[str, Any] | None
    prompt_tokens: int | None
    completion_tokens: int | None
    node: str
    started_at: datetime
    heartbeat_at: datetime | None
    finished_at: datetime | None
    error: str | None
    actions: tuple[ActionRecord, ...]

    def shown(self) -> RunView:
        """The run as outputs write it: each channel, in its actions and its plan, as
        ``@username``."""
        plan = self.plan
        if plan is not None and isinstance(plan.get("actions"), list):
            plan = {**plan, "actions": [_shown_step(step) for step in plan["actions"]]}
        running = self.status is RunStatus.RUNNING
        actions = tuple(a.shown(run_running=running) for a in self.actions)
        return replace(self, plan=plan, actions=actions)


def _shown_step(step: Any) -> Any:
    channel = step.get("channel") if isinstance(step, dict) else None
    return {**step, "channel": handle(channel)} if isinstance(channel, str) else step


@dataclass(frozen=True, slots=True)
class ChannelView:
    """A ``channels`` row as read (``enabled``: the text of anything but true or false)."""

    id: int
    username: str
    title: str | None
    category: str | None
    description: str | None
    enabled: bool | str
    invalid_reason: str | None
    flagged_reason: str | None

    def shown(self) -> ChannelView:
        return replace(self, username=handle(self.username))

    @property
    def in_pool(self) -> bool:
        """Whether plans may use the channel: enabled, usable, not flagged
        (``db.registry.in_pool_sql`` is this rule in SQL; a test holds the two together)."""
        return self.enabled is True and self.invalid_reason is None and self.flagged_reason is None

    @property
    def problem(self) -> str | None:
        """Why the row cannot be used, or ``None``. Usernames are stored canonical (lower
        case, no ``@``): plans, joins and the history name channels that way."""
        try:
            spec = validate_channel(
                username=self.username,
                title=self.title,
                category=self.category,
                description=self.description,
            )
            parse_enabled(self.enabled)
        except InvalidValue as exc:
            return str(exc)
        if spec.username != self.username:
            return f"username {self.username!r} must be stored as {spec.username!r}"
        return None


# --- planning ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PoolChannel:
    username: str
    category: str | None = None
    title: str | None = None


@dataclass(frozen=True, slots=True)
class PastRun:
    """A finished run of the session, for the planner's prompt."""

    started_at: datetime
    status: RunStatus
    joined: tuple[str, ...]
    read: tuple[str, ...]

    @classmethod
    def of(cls, run: RunView) -> PastRun:
        """A finished run as the prompt tells of it: the channels it joined and read."""

        def channels(kind: ActionKind) -> tuple[str, ...]:
            return tuple(
                a.channel
                for a in run.actions
                if a.kind is kind and a.outcome is Outcome.OK and a.channel
            )

        return cls(
            run.started_at,
            run.status,
            channels(ActionKind.JOIN_CHANNEL),
            channels(ActionKind.READ_MESSAGES),
        )


# How many finished runs of the session a plan is told of.
RECENT_RUNS: Final = 3
# The pool's joins of the last hour (by channel) are the same for every plan made at about
# the same moment: a store may count them once per POOL_JOINS_S and share the counts. A plan
# only proposes; the ledger's reservation (``reserve_joins``) is the atomic check of the pace.
POOL_JOINS_S: Final = timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class PoolJoins:
    """Each pool channel's joins in the last hour, as counted at ``counted_at``."""

    counted_at: datetime
    last_hour: dict[str, int]

    def fresh_at(self, now: datetime) -> bool:
        return self.counted_at <= now < self.counted_at + POOL_JOINS_S


@dataclass(frozen=True, slots=True)
class PlanningFacts:
    """What the database knows that a plan depends on."""

    pool: tuple[PoolChannel, ...]
    joined: frozenset[str]
    recent_runs: tuple[PastRun, ...]
    # The session's joins (reserved or made) in the last 24 hours.
    joins_last_24h: int = 0
    # Joins of each pool channel in the last hour across every session and node.
    channel_joins_last_hour: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class JoinLimits:
    """What a session's joins may not exceed right now: ``per_day`` in any 24 hours (its
    ramp stage) and ``per_channel_hour`` joins of one channel in any hour pool-wide."""

    per_day: int
    per_channel_hour: int

    def joins_left(self, joins_last_24h: int) -> int:
        """How many more joins the account may make now."""
        return max(self.per_day - joins_last_24h, 0)

    def room(self, channel_joins_last_hour: int) -> int:
        """How many more joins the channel may take this hour."""
        return self.per_channel_hour - channel_joins_last_hour


@dataclass(frozen=True, slots=True)
class WarmthFacts:
    """The database's part of a session's warmth report."""

    joins_last_24h: int
    joins_last_7d: int
    channels_joined: tuple[str, ...]
    runs_last_7d: dict[str, int]


@dataclass(frozen=True, slots=True)
class SessionCounts:
    """The registry at a glance: the rows by their ``Standing``, those with a next slot,
    the active ones cooling down, the pool rows heatup cannot use, the runs in flight (on
    every node)."""

    sessions: int = 0
    scheduled: int = 0
    active: int = 0
    needs_attention: int = 0
    disabled: int = 0
    invalid: int = 0
    cooling_down: int = 0
    invalid_channels: int = 0
    running: int = 0

    def by_standing(self) -> dict[Standing, int]:
        return {standing: getattr(self, standing.value) for standing in Standing}
