"""What heatup's parts ask of the database: narrow ports, one for each part.

- ``SchedulingStore``: the scheduler's (reconcile, claim, reap, housekeeping);
- ``RunRecorder``: the runner's and the executor's (a run's rows, the join ledger, the
  session state runs change);
- ``Registry``: the API's and the CLI's (the registry and the history);
- ``Console``: the web console's (the registry and the history, the pool at a glance);
- ``TokenLedger``: the LLM planner's daily token budget, shared by every node;
- ``LeaseStore``: each process's lease, which keeps its runs alive.

``db.Repository`` implements all of them on SQLite and PostgreSQL; ``testing.InMemoryStore``
implements all but ``Console`` in memory for unit tests, and one contract suite
(``tests/integration/test_store_contract.py``) holds both to the same behaviour.
The records they pass are in ``records``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from datetime import date, datetime
from typing import Any, Protocol, TypeVar

from heatup_daemon.enums import Clearance, JoinRefusal, Refusal, RunStatus, SessionSort, Trigger
from heatup_daemon.records import (
    ActionRecord,
    ChannelView,
    Claim,
    Decision,
    JoinLimits,
    LeaseReading,
    Node,
    PlanningFacts,
    Reconciled,
    Run,
    RunInFlight,
    RunView,
    SessionCounts,
    StoredPlan,
    WarmthFacts,
)
from heatup_daemon.session import Session, SessionRecord
from heatup_daemon.validation import ChannelSpec, SessionSpec
from heatup_daemon.views import (
    CLI_AUTHOR,
    EVERY_SESSION,
    Activity,
    AuditEntry,
    Author,
    ChannelLine,
    Imported,
    Overview,
    RunFilter,
    SessionPage,
    SessionSearch,
)

T = TypeVar("T")


class SlotPolicy(Protocol):
    """The scheduler's decisions, pure and without I/O; stores call them on rows they hold
    locked, inside the transaction that writes the outcome."""

    def reconcile(self, record: SessionRecord, now: datetime) -> Decision:
        """The next slot of a row an admin inserted or edited (or one flagged before)."""

    def claim(self, record: SessionRecord, running_run_id: int | None, now: datetime) -> Decision:
        """What becomes of a due row's slot: a run, or a skipped row with its reason; and the
        row's next slot. ``running_run_id``: a run of the session already in flight."""


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
    ) -> dict[int, tuple[Refusal, str]]:
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

    async def roll_up(self, now: datetime) -> int:
        """Count the history's latest hours again for the console's charts
        (``db.activity``); return how many hours were counted."""

    async def counts(self, now: datetime) -> SessionCounts:
        """Counts for the status line and the gauges (a row's standing as
        ``session.standing`` decides it)."""

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
        """The usable pool, the session's joined channels and finished recent runs. The
        pool's joins of the last hour may be counted up to ``records.POOL_JOINS_S`` ago."""

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
    ) -> dict[str, JoinRefusal | None]:
        """Reserve, in the join ledger, the joins of ``channels`` (in order) that ``limits``
        leave room for. Returns each channel's verdict: ``None`` granted, else why not
        (``JoinRefusal``). Atomic
        across nodes: the count and the reservation are one transaction with the channels'
        rows locked, so two nodes never both take a channel's last place."""

    async def record_join(self, run: Run, record: ActionRecord) -> None:
        """A join action's end, in one transaction: its row (as ``record_action`` writes
        it); its place in the join ledger, kept if the join happened or may have (``ok``,
        ``unknown``) and given back if it did not; and, when it happened, the channel among
        the session's joined channels."""


class Registry(Protocol):
    """The sessions and the channel pool, as the API, the CLI and tests change them."""

    async def list_sessions(self) -> list[SessionRecord]: ...

    async def get_session(self, gateway_session_id: int) -> SessionRecord:
        """``NotFound`` unless registered."""

    async def add_session(
        self, spec: SessionSpec, *, enabled: bool = True, by: Author = CLI_AUTHOR
    ) -> SessionRecord:
        """``AlreadyExists`` if the gateway id is registered. Each change is audited as
        ``by``'s."""

    async def remove_session(self, gateway_session_id: int, *, by: Author = CLI_AUTHOR) -> None:
        """Delete the row (``NotFound`` unless registered); its runs and join places stay,
        without it."""

    async def add_channel(self, spec: ChannelSpec, *, by: Author = CLI_AUTHOR) -> ChannelView:
        """``AlreadyExists`` if the channel is in the pool."""

    async def list_channels(self) -> list[ChannelView]: ...

    async def history(self, gateway_session_id: int, limit: int = 10) -> list[RunView]: ...

    async def get_run(self, run_id: int) -> RunView:
        """``NotFound`` unless it exists."""

    async def warmth_facts(self, session_id: int, now: datetime) -> WarmthFacts: ...


class Console(Registry, Protocol):
    """What the web console reads and changes, beside the registry and the history."""

    async def set_session_enabled(
        self, gateway_session_id: int, enabled: bool, *, by: Author = CLI_AUTHOR
    ) -> SessionRecord:
        """``NotFound`` unless registered; enabling also clears ``needs_attention``."""

    async def edit_session(self, spec: SessionSpec, *, by: Author = CLI_AUTHOR) -> SessionRecord:
        """Set the session's admin columns to ``spec``'s (``NotFound`` unless registered)."""

    async def set_channel_enabled(
        self, username: str, enabled: bool, *, by: Author = CLI_AUTHOR
    ) -> None:
        """``NotFound`` unless the channel is in the pool."""

    async def audit_of(self, gateway_session_id: int, limit: int) -> list[AuditEntry]:
        """The session's audit, newest first."""

    async def registered(self, gateway_ids: Sequence[int]) -> set[int]:
        """Which of ``gateway_ids`` are registered."""

    async def import_sessions(
        self,
        rows: Sequence[tuple[SessionSpec, bool]],
        *,
        skip_registered: bool,
        by: Author = CLI_AUTHOR,
    ) -> Imported:
        """Register the rows in one transaction; nothing if one is registered, unless
        ``skip_registered``."""

    async def session_batch(self, after_id: int, limit: int) -> list[SessionRecord]:
        """Up to ``limit`` sessions after row ``after_id``, in row order."""

    async def overview(
        self, now: datetime, counted: tuple[SessionCounts, datetime] | None = None
    ) -> Overview:
        """The pool at a glance; its counts are ``counted`` where the daemon has taken them
        already (with when), else counted now."""

    async def activity(self, since: datetime) -> Activity:
        """The history by the hour from ``since``'s on, as last counted."""

    async def session_page(
        self,
        sort: SessionSort,
        descending: bool,
        offset: int,
        limit: int,
        search: SessionSearch = EVERY_SESSION,
    ) -> SessionPage:
        """``limit`` sessions that match ``search`` from ``offset`` in the order asked, and
        how many match."""

    async def runs_page(
        self, matching: RunFilter, before_id: int | None, limit: int
    ) -> list[RunView]:
        """Up to ``limit`` runs that match, newest first, older than ``before_id``."""

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

    async def end_dead_node(self, node: Node, now: datetime) -> int:
        """The node's process is known to be gone (``succession``): end its ``running``
        runs ``interrupted`` and drop its lease, in one transaction, without waiting for the
        lease to run out; how many runs ended. Nothing changes if the node's row has another
        name (an id of another database's node)."""


class TokenLedger(Protocol):
    """LLM tokens spent per UTC day by every node together."""

    async def tokens_spent(self, day: date) -> int: ...

    async def reserve_tokens(self, key: str, day: date, tokens: int, budget: int) -> bool:
        """Count ``tokens`` against the day under ``key`` (one plan's) if the day's total
        stays within ``budget``, atomically across nodes; whether it did."""

    async def settle_tokens(self, key: str, spent: int) -> None:
        """Count ``spent`` in place of what ``key`` reserved, once: settling a key again,
        or one whose reservation never landed, changes nothing (an answer lost after its
        commit may be asked again)."""


class NodeStore(SchedulingStore, RunRecorder, Registry, TokenLedger, LeaseStore, Protocol):
    """Everything one node asks of its database: ``db.Repository`` and
    ``testing.InMemoryStore`` are both one."""


__all__ = [
    "Console",
    "LeaseStore",
    "NodeStore",
    "Registry",
    "RunRecorder",
    "SchedulingStore",
    "SlotPolicy",
    "TokenLedger",
]


async def carried(call: Awaitable[T], pending: set[asyncio.Future[Any]] | None = None) -> T:
    """``call`` (a store operation) carried to its end even if its caller is cancelled
    meanwhile: a write is never cut halfway. A failure that nobody awaits then is retrieved
    here, not left for the event loop to report as an error. ``pending`` holds the call
    while it runs (a store waits for them all before it closes)."""
    task = asyncio.ensure_future(call)
    task.add_done_callback(_retrieve)
    if pending is not None:
        pending.add(task)
        task.add_done_callback(pending.discard)
    return await asyncio.shield(task)


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()
