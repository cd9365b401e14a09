"""The shared database of the simulated cluster: heatup's ``InMemoryStore`` (which the store
contract suite holds to the SQL stores), as PostgreSQL behaves for several nodes.

- The decisions nodes share (a lease's registration and renewal, the reaper, the fence
  before a gateway call) are made on the database's own clock, the loop's true time, never
  on the ``now`` a node passes: ``SqlStore.shared_now`` on PostgreSQL.
- The console's writes the in-memory store leaves out (edit, enable and disable, import),
  as ``db/registry.py`` makes them: one transaction each; and a run's write to its
  session's row (a cooldown, ``needs_attention``) after an admin removed the row changes
  nothing, as an UPDATE does (the in-memory store raises ``KeyError`` there).
- Every lease row's history (written, renewed, dropped) is kept, so that the invariants can
  tell whether a node's lease held over a span of virtual time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from heatup_daemon.enums import Clearance, JoinStatus, SessionState
from heatup_daemon.errors import AlreadyExists
from heatup_daemon.records import ActionRecord, Decision, LeaseReading, Node
from heatup_daemon.session import KEY_FIELDS, ROW_DEFAULTS, SessionRecord, read_time
from heatup_daemon.testing import InMemoryStore
from heatup_daemon.validation import SessionSpec
from heatup_daemon.views import CLI_AUTHOR, Author, Imported
from tests.sim.loop import EPOCH

# (virtual seconds when written, lease_until in virtual seconds, or None: the row dropped)
LeaseEntry = tuple[float, float | None]


def seconds(moment: datetime) -> float:
    """A wall time as the simulation's virtual seconds."""
    return (moment - EPOCH).total_seconds()


class DatabaseClock:
    """The database host's clock: the loop's true time."""

    def __init__(self, wall: Callable[[], datetime]) -> None:
        self.now = wall


class SimStore(InMemoryStore):
    """The cluster's one database."""

    def __init__(self, clock: DatabaseClock) -> None:
        super().__init__(clock)  # type: ignore[arg-type]
        self.db_clock = clock
        self.lease_log: dict[int, list[LeaseEntry]] = {}
        # Session row -> the last row id written when its slots were placed anew.
        self.anchors: dict[int, list[int]] = {}
        self._keys: dict[tuple[Any, ...], str] = {}
        self._records: dict[tuple[Any, ...], SessionRecord] = {}

    # --- where a session's chain of slots may break ----------------------------------------------

    def _store(self, decisions: list[Decision]) -> None:
        """Note each decision that places a session's slots anew (a reconcile that moves
        them, a claim of an edited row): its chain of slot rows may break there. Noted by
        the ids written so far (rows written after it have higher ids), not by a time: a
        node stamps its rows with its own clock."""
        for decision in decisions:
            before = read_time(self.sessions[decision.record.id]["next_nominal_at"])
            first = decision.rows[0].scheduled_for if decision.rows else decision.next_nominal_at
            if first != before:
                self.anchors.setdefault(decision.record.id, []).append(self._ids)
        super()._store(decisions)

    # --- the same reads, remembered: a row read again unchanged is read as before ------------

    def _key(self, row: dict[str, Any]) -> str:
        values = tuple(row[name] for name in KEY_FIELDS)
        key = self._keys.get(values)
        if key is None:
            key = self._keys[values] = super()._key(row)
        return key

    def _held(self, since: datetime, other_than: int | None = None, **match: Any) -> int:
        """``MemoryTables._held``, counted in one pass without a generator per row."""
        wanted = tuple(match.items())
        released = JoinStatus.RELEASED
        held = 0
        for join in self.ledger:
            if (
                join["reserved_at"] < since
                or join["status"] is released
                or join["run_id"] == other_than
            ):
                continue
            for key, value in wanted:
                if join[key] != value:
                    break
            else:
                held += 1
        return held

    def _record(self, session_id: int) -> SessionRecord:
        values = (session_id, *self.sessions[session_id].values())
        record = self._records.get(values)
        if record is None:
            record = self._records[values] = super()._record(session_id)
        return record

    # --- shared decisions on the database's clock --------------------------------------------

    def _note_leases(self, before: dict[int, datetime]) -> None:
        at = seconds(self.db_clock.now())
        for node_id, until in self.leases.items():
            if before.get(node_id) != until:
                self.lease_log.setdefault(node_id, []).append((at, seconds(until)))
        for node_id in before.keys() - self.leases.keys():
            self.lease_log.setdefault(node_id, []).append((at, None))

    async def register_node(self, name: str, lease_s: float, now: datetime) -> LeaseReading:
        before = dict(self.leases)
        reading = await super().register_node(name, lease_s, self.db_clock.now())
        self._note_leases(before)
        return reading

    async def renew_node(self, node: Node, lease_s: float, now: datetime) -> LeaseReading | None:
        before = dict(self.leases)
        reading = await super().renew_node(node, lease_s, self.db_clock.now())
        self._note_leases(before)
        return reading

    async def release_node(self, node: Node) -> None:
        before = dict(self.leases)
        await super().release_node(node)
        self._note_leases(before)

    async def reap_stale_runs(self, now: datetime, stale_s: float) -> int:
        before = dict(self.leases)
        reaped = await super().reap_stale_runs(self.db_clock.now(), stale_s)
        self._note_leases(before)
        return reaped

    async def start_call(
        self, run_id: int, record: ActionRecord, budget_s: float, now: datetime
    ) -> Clearance:
        return await super().start_call(run_id, record, budget_s, self.db_clock.now())

    # --- as the SQL store does it -------------------------------------------------------------

    async def set_cooldown(
        self, session_id: int, until: datetime, wait_s: int, at: datetime
    ) -> None:
        """An UPDATE of a row an admin removed meanwhile changes nothing (the in-memory
        store raises ``KeyError`` there: the contract suite does not hold it to this)."""
        if session_id in self.sessions or self.unavailable:
            await super().set_cooldown(session_id, until, wait_s, at)

    async def mark_needs_attention(self, session_id: int, reason: str) -> None:
        """As ``set_cooldown``: nothing, for a removed row."""
        if session_id in self.sessions or self.unavailable:
            await super().mark_needs_attention(session_id, reason)

    # --- the console's writes -------------------------------------------------------------------

    async def edit_session(self, spec: SessionSpec, *, by: Author = CLI_AUTHOR) -> SessionRecord:
        self._check()
        session_id = self._by_gateway_id(spec.gateway_session_id)
        self.sessions[session_id].update(
            label=spec.label,
            schedule=spec.schedule_text,
            jitter_seconds=spec.jitter_seconds,
            timezone=spec.timezone.key,
            account_created_at=spec.account_created_at,
        )
        return self._record(session_id)

    async def set_session_enabled(
        self, gateway_session_id: int, enabled: bool, *, by: Author = CLI_AUTHOR
    ) -> SessionRecord:
        self._check()
        session_id = self._by_gateway_id(gateway_session_id)
        row = self.sessions[session_id]
        row["enabled"] = enabled
        if enabled:
            row.update(state=SessionState.ACTIVE.value, state_reason=None)
        return self._record(session_id)

    async def registered(self, gateway_ids: Sequence[int]) -> set[int]:
        self._check()
        taken = {row["gateway_session_id"] for row in self.sessions.values()}
        return {gateway_id for gateway_id in gateway_ids if gateway_id in taken}

    async def import_sessions(
        self,
        rows: Sequence[tuple[SessionSpec, bool]],
        *,
        skip_registered: bool,
        by: Author = CLI_AUTHOR,
    ) -> Imported:
        self._check()
        taken = {row["gateway_session_id"] for row in self.sessions.values()}
        registered = {
            spec.gateway_session_id for spec, _ in rows if spec.gateway_session_id in taken
        }
        if registered and not skip_registered:
            return Imported(registered, 0)
        fresh = [(spec, on) for spec, on in rows if spec.gateway_session_id not in registered]
        if len({spec.gateway_session_id for spec, _ in fresh}) != len(fresh):
            raise AlreadyExists("an import names one gateway id twice")
        for spec, enabled in fresh:
            self.sessions[self._next_id()] = {
                **ROW_DEFAULTS,
                **spec.columns(enabled),
                "created_at": self.db_clock.now(),
            }
        return Imported(registered, len(fresh))
