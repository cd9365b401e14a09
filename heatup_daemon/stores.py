"""What heatup's parts ask of the database: narrow ports and the records they exchange.

- ``SchedulingStore``: the scheduler's (reconcile, claim, reap, housekeeping);
- ``RunRecorder``: the runner's and the executor's (a run's rows, the join ledger, the
  session state runs change);
- ``RegistryReader``: the API's and the CLI's (the registry and the history);
- ``ConsoleReader``: the web console's (the registry and the history, the pool at a glance);
- ``TokenLedger``: the LLM planner's daily token budget, shared by every node;
- ``LeaseStore``: each process's lease, which keeps its runs alive.

``db.Repository`` implements all of them on SQLite and PostgreSQL; ``testing.InMemoryStore``
implements all but ``ConsoleReader`` in memory for unit tests, and one contract suite
(``tests/integration/test_store_contract.py``) holds both to the same behaviour.
Records are plain frozen dataclasses: nothing outside ``db`` sees an ORM object.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Final, Protocol

from heatup_daemon.enums import ActionKind, Clearance, Outcome, PlanSource, RunStatus, Trigger
from heatup_daemon.session import Session, SessionRecord
from heatup_daemon.validation import ChannelSpec, SessionSpec, handle

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
    record: SessionRecord


@dataclass(frozen=True, slots=True)
class SlotRow:
    """A ``warmup_runs`` row a claim writes for one slot (``running``), or for a slot and the
    ones up to ``next_slot_at`` that will not run (``skipped``, with the reason)."""

    status: RunStatus
    scheduled_for: datetime
    due_at: datetime
    next_slot_at: datetime
    error: str | None = None
    # Why a skipped row was skipped: one of ``SKIP_CAUSES``.
    cause: str | None = None


# Why slots are skipped (the label values of ``heatup_slots_skipped_total``).
SKIP_CAUSES: Final = ("late", "in_flight", "cooldown", "coalesced")


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


class SlotPolicy(Protocol):
    """The scheduler's decisions, pure and without I/O; stores call them on rows they hold
    locked, inside the transaction that writes the outcome."""

    def reconcile(self, record: SessionRecord, now: datetime) -> Decision:
        """The next slot of a row an admin inserted or edited (or one flagged before)."""

    def claim(self, record: SessionRecord, running_run_id: int | None, now: datetime) -> Decision:
        """What becomes of a due row's slot: a run, or a skipped row with its reason; and the
        row's next slot. ``running_run_id``: a run of the session already in flight."""


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

    def shown(self) -> ActionRecord:
        return self if self.channel is None else replace(self, channel=handle(self.channel))


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
        return replace(self, plan=plan, actions=tuple(a.shown() for a in self.actions))


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


@dataclass(frozen=True, slots=True)
class WarmthFacts:
    """The database's part of a session's warmth report."""

    joins_last_24h: int
    joins_last_7d: int
    channels_joined: tuple[str, ...]
    runs_last_7d: dict[str, int]


# --- the console ------------------------------------------------------------------------


class SessionSort(StrEnum):
    """The console's session list orders, each a column of the list."""

    GATEWAY_ID = "id"
    STATE = "state"
    SCHEDULE = "schedule"
    LAST_RUN = "last_run"
    NEXT_RUN = "next_run"
    PROBLEM = "problem"


@dataclass(frozen=True, slots=True)
class PoolOverview:
    """The pool at a glance: ``sessions`` as ``SchedulingStore.counts`` gives them, the runs
    of the last 24 hours by status, and the next time a session is due."""

    sessions: dict[str, int]
    runs_last_24h: dict[str, int]
    next_due_at: datetime | None


@dataclass(frozen=True, slots=True)
class SessionLine:
    """A session in the console's list, with its latest run."""

    record: SessionRecord
    last_status: RunStatus | None
    last_started_at: datetime | None


@dataclass(frozen=True, slots=True)
class SessionPage:
    lines: tuple[SessionLine, ...]
    total: int


@dataclass(frozen=True, slots=True)
class ChannelLine:
    """A pool channel, how many sessions joined it, and its joins of the last hour (the
    pool's pace counts these) and day."""

    view: ChannelView
    members: int
    joins_last_hour: int
    joins_last_24h: int


# --- ports -------------------------------------------------------------------------------


class SchedulingStore(Protocol):
    async def reconcile(
        self, policy: SlotPolicy, now: datetime, after_id: int, limit: int
    ) -> Reconciled:
        """Decide, with ``policy.reconcile``, the rows with ids above ``after_id`` that an
        admin inserted or edited since heatup applied them, or that are flagged for a bad
        value in heatup's own columns (at most ``limit``, in id order), and store each
        decision. Rows another node is deciding meanwhile are passed over; a decision is
        stored only if the row's key is still the one it was decided on."""

    async def claim_due(
        self,
        policy: SlotPolicy,
        now: datetime,
        limit: int,
        node: Node,
        due_by: datetime | None = None,
    ) -> Claim:
        """In one transaction: lock up to ``limit`` rows whose ``next_run_at`` has come (by
        ``due_by``, default ``now``), most overdue first, passing over rows another claimer
        holds; decide each with ``policy.claim`` at ``now``; move each row to its next slot
        and insert its slot rows
        (``ON CONFLICT DO NOTHING`` on the slot key). A process that dies before the commit
        has changed nothing; after it, every slot has its row. Returns the runs whose
        ``running`` row was inserted."""

    async def next_due_at(self) -> datetime | None:
        """The earliest ``next_run_at`` of any row (the dispatcher sleeps until then)."""

    async def refusals(
        self, session_ids: frozenset[int], now: datetime
    ) -> dict[int, tuple[str, str]]:
        """Which of these sessions may not run now (``session.admit``): the refusal's rule
        (``removed`` for a deleted row) and its message."""

    async def check_channels(self) -> list[tuple[str, str | None]]:
        """Validate every pool row; store and return each verdict that changed."""

    async def reap_stale_runs(self, now: datetime, stale_s: float) -> int:
        """End ``interrupted`` the running runs whose node's lease ran out (their process
        died or lost the database), give back the join places they held, and drop those
        nodes' rows; runs written before leases existed go when their heartbeat is older
        than ``stale_s``. Decided on the database's clock (``now`` on SQLite)."""

    async def delete_history(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` finished runs (with their actions) started before
        ``before``, oldest first; return how many runs went."""

    async def counts(self, now: datetime) -> dict[str, int]:
        """Counts for the status line and the gauges: sessions, scheduled, active,
        needs_attention, disabled, invalid, invalid_channels, running."""

    async def sessions_aged(self, now: datetime, days: Sequence[int]) -> list[int]:
        """For each of ``days``: how many enabled, usable, active sessions are at least that
        many days old (``account_created_at``, else their registration)."""


class RunRecorder(Protocol):
    async def start_run(
        self, gateway_session_id: int, trigger: Trigger, now: datetime, node: Node
    ) -> Run:
        """Insert a ``running`` run for an API or CLI start, with the session's row locked:
        ``NotFound`` if it is not registered, ``SessionNotRunnable`` if ``session.admit``
        refuses it, ``AlreadyRunning`` if it has a run in flight. Nothing is written then."""

    async def runs_in_flight(self, node: Node) -> list[RunInFlight]:
        """The node's ``running`` runs, with their sessions' rows (a removed session's run
        is not among them: it cannot run)."""

    async def planning_facts(self, session: Session, now: datetime) -> PlanningFacts:
        """The usable pool, the session's joined channels and finished recent runs."""

    async def set_run_plan(self, run_id: int, plan: StoredPlan) -> None: ...

    async def record_action(self, run_id: int, record: ActionRecord) -> None:
        """Write one action's row, or overwrite it: the row of an action in flight is written
        ``unknown`` before its gateway call, then its end. Keyed on (run, seq), so a retried
        write is stored once."""

    async def start_call(
        self, run_id: int, record: ActionRecord, budget_s: float, now: datetime
    ) -> Clearance:
        """The fence before a gateway call. In one statement's condition: the run is still
        ``running`` and its node's lease lasts at least ``budget_s`` more (the longest the
        call may take), on the database's clock; only then is the action's in-flight row
        (``record``, as ``record_action`` writes it) written and the run's heartbeat set,
        and the answer is ``cleared``. Otherwise nothing is written: ``reaped`` or
        ``lease_short``. So a run whose lease another node's reaper may take makes no call,
        and no call outlives its run's lease."""

    async def finish_run(
        self, run_id: int, status: RunStatus, error: str | None, at: datetime
    ) -> RunStatus:
        """End a ``running`` run; a run the reaper ended meanwhile keeps the reaper's end.
        Returns the status the run has now."""

    async def set_cooldown(
        self, session_id: int, until: datetime, wait_s: int, at: datetime
    ) -> None:
        """A flood wait of ``wait_s`` seconds at ``at``: no run before ``until``."""

    async def mark_needs_attention(self, session_id: int, reason: str) -> None: ...

    async def note_channel_failure(self, channel: str, code: str, at: datetime) -> str | None:
        """Flag the channel once it failed with ``code`` for several sessions within a day;
        the flag's reason if this call flagged it."""

    async def reserve_joins(
        self, run: Run, channels: Sequence[str], limits: JoinLimits, now: datetime
    ) -> dict[str, str | None]:
        """Reserve, in the join ledger, the joins of ``channels`` (in order) that ``limits``
        leave room for. Returns each channel's verdict: ``None`` granted, else why not
        (``ramp``, ``channel_pace``, ``gone`` for a channel no longer in the pool). Atomic
        across nodes: the count and the reservation are one transaction with the channels'
        rows locked, so two nodes never both take a channel's last place."""

    async def record_join(self, run: Run, record: ActionRecord) -> None:
        """A join action's end, in one transaction: its row (as ``record_action`` writes
        it); its place in the join ledger, kept if the join happened or may have (``ok``,
        ``unknown``) and given back if it did not; and, when it happened, the channel among
        the session's joined channels."""


class RegistryReader(Protocol):
    async def list_sessions(self) -> list[SessionRecord]: ...

    async def get_session(self, gateway_session_id: int) -> SessionRecord:
        """``NotFound`` unless registered."""

    async def add_session(self, spec: SessionSpec, *, enabled: bool = True) -> SessionRecord:
        """``AlreadyExists`` if the gateway id is registered."""

    async def add_channel(self, spec: ChannelSpec) -> ChannelView: ...

    async def list_channels(self) -> list[ChannelView]: ...

    async def history(self, gateway_session_id: int, limit: int = 10) -> list[RunView]: ...

    async def get_run(self, run_id: int) -> RunView:
        """``NotFound`` unless it exists."""

    async def warmth_facts(self, session_id: int, now: datetime) -> WarmthFacts: ...


class ConsoleReader(RegistryReader, Protocol):
    """What the web console reads, beside the registry and the history."""

    async def overview(self, now: datetime) -> PoolOverview: ...

    async def session_page(
        self, sort: SessionSort, descending: bool, offset: int, limit: int
    ) -> SessionPage:
        """``limit`` sessions from ``offset`` in the order asked, and how many there are."""

    async def channel_lines(self, now: datetime) -> list[ChannelLine]: ...


class LeaseStore(Protocol):
    """The nodes' leases, on the database's clock (the node's own ``now`` on SQLite, where
    every process shares one host)."""

    async def register_node(self, name: str, lease_s: float, now: datetime) -> LeaseReading:
        """A new lease row for a process starting, valid ``lease_s``."""

    async def renew_node(self, node: Node, lease_s: float, now: datetime) -> LeaseReading | None:
        """Extend the node's lease to ``lease_s`` from now; ``None`` if its row is gone (a
        reaper took its runs: it must register again)."""

    async def release_node(self, node: Node) -> None:
        """Drop the node's lease (at a clean stop, once its runs have ended)."""


class TokenLedger(Protocol):
    """LLM tokens spent per UTC day by every node together."""

    async def tokens_spent(self, day: date) -> int: ...

    async def reserve_tokens(self, day: date, tokens: int, budget: int) -> bool:
        """Count ``tokens`` against the day if the day's total stays within ``budget``,
        atomically across nodes; whether it did."""

    async def spend_tokens(self, day: date, tokens: int) -> None:
        """Count ``tokens`` against the day (fewer than zero: give a reservation back)."""


__all__ = [
    "ActionRecord",
    "ChannelLine",
    "ChannelView",
    "Claim",
    "ConsoleReader",
    "Decision",
    "JoinLimits",
    "LeaseReading",
    "LeaseStore",
    "Node",
    "PastRun",
    "PlanningFacts",
    "PoolChannel",
    "PoolOverview",
    "Reconciled",
    "RegistryReader",
    "Run",
    "RunInFlight",
    "RunRecorder",
    "RunView",
    "SchedulingStore",
    "SessionLine",
    "SessionPage",
    "SessionSort",
    "SlotPolicy",
    "SlotRow",
    "StoredPlan",
    "TokenLedger",
    "WarmthFacts",
]
