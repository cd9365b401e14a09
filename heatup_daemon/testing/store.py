"""``InMemoryStore``: the ports of ``heatup_daemon.stores`` over plain dictionaries.

For unit tests of the scheduler, the runner and the API without a database. It keeps the
same contract as ``db.Repository`` (``tests/integration/test_store_contract.py`` runs one
suite against both): every operation completes without yielding to the event loop, so each
is atomic the way a database transaction is. ``unavailable = True`` makes every operation
raise ``DatabaseUnavailable``, as in an outage. Rows may be written with any values
(``sessions[id][column] = ...``), as an admin's hand edit would. Rows are stamped with the
given ``clock``, as a database stamps them with its own.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

from heatup_daemon.clock import Clock, SystemClock
from heatup_daemon.config import ChannelEntry
from heatup_daemon.db.leases import REAPED
from heatup_daemon.db.runs import (
    CHANNEL_FLAG_SESSIONS,
    CHANNEL_FLAG_WINDOW,
    RECENT_RUNS,
    WEEK,
    past_run,
)
from heatup_daemon.db.scheduling import refusals_of
from heatup_daemon.db.sessions import read_time
from heatup_daemon.enums import (
    ActionKind,
    Clearance,
    JoinStatus,
    Outcome,
    RunStatus,
    SessionState,
    Trigger,
)
from heatup_daemon.errors import (
    AlreadyExists,
    AlreadyRunning,
    DatabaseUnavailable,
    InvalidValue,
    NotFound,
)
from heatup_daemon.ramp import PACE_WINDOW, RAMP_WINDOW, join_verdict
from heatup_daemon.session import TIME_FIELDS, SessionRecord, admit
from heatup_daemon.slots import KEY_FIELDS, KEY_SEPARATOR
from heatup_daemon.stores import (
    ActionRecord,
    ChannelView,
    Claim,
    Decision,
    JoinLimits,
    LeaseReading,
    Node,
    PlanningFacts,
    PoolChannel,
    Reconciled,
    Run,
    RunInFlight,
    RunView,
    SlotPolicy,
    StoredPlan,
    WarmthFacts,
)
from heatup_daemon.validation import ChannelSpec, SessionSpec, validate_channel

SESSION_DEFAULTS: dict[str, Any] = {
    "label": None,
    "enabled": True,
    "jitter_seconds": 0,
    "timezone": "UTC",
    "account_created_at": None,
    "state": SessionState.ACTIVE.value,
    "state_reason": None,
    "invalid_reason": None,
    "applied_key": None,
    "next_nominal_at": None,
    "next_run_at": None,
    "last_run_at": None,
    "cooldown_until": None,
    "flood_wait_at": None,
    "flood_wait_s": None,
}


def _new_run(**fields: Any) -> RunView:
    """A run row as a fresh insert leaves it: no plan, no actions yet."""
    return RunView(
        plan_source=None,
        plan_model=None,
        plan=None,
        prompt_tokens=None,
        completion_tokens=None,
        actions=(),
        **fields,
    )


class InMemoryStore:
    """``SchedulingStore``, ``RunRecorder``, ``RegistryReader`` and ``TokenLedger``."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.sessions: dict[int, dict[str, Any]] = {}
        self.channels: dict[int, dict[str, Any]] = {}
        self.joined: dict[int, dict[int, datetime]] = defaultdict(dict)
        self.runs: dict[int, RunView] = {}
        self.ledger: list[dict[str, Any]] = []  # the join ledger's rows
        self.tokens: dict[date, int] = {}
        self.leases: dict[int, datetime] = {}  # node id -> lease_until
        self.run_nodes: dict[int, int] = {}  # run id -> the node whose lease keeps it
        self.unavailable = False
        self._clock = clock or SystemClock()
        self._ids = 0

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def _check(self) -> None:
        if self.unavailable:
            raise DatabaseUnavailable("database memory:// is not available: the test says so")

    # --- rows ------------------------------------------------------------------------------

    def _key(self, row: dict[str, Any]) -> str:
        def text(value: Any) -> str:
            if value is None:
                return ""
            if isinstance(value, bool):
                return "on" if value else "off"
            return str(value)

        return KEY_SEPARATOR.join(text(row[name]) for name in KEY_FIELDS)

    def _record(self, session_id: int) -> SessionRecord:
        row = self.sessions[session_id]
        times = {name: read_time(row[name]) for name in TIME_FIELDS}
        return SessionRecord(
            id=session_id,
            gateway_session_id=row["gateway_session_id"],
            label=row["label"],
            enabled=row["enabled"],
            schedule=row["schedule"],
            jitter_seconds=row["jitter_seconds"],
            timezone=row["timezone"],
            state=row["state"],
            state_reason=row["state_reason"],
            invalid_reason=row["invalid_reason"],
            flood_wait_s=row["flood_wait_s"],
            key=self._key(row),
            applied_key=row["applied_key"],
            **times,
        )

    def _by_gateway_id(self, gateway_session_id: int) -> int:
        for session_id, row in self.sessions.items():
            if row["gateway_session_id"] == gateway_session_id:
                return session_id
        raise NotFound(f"no session with gateway id {gateway_session_id} is registered")

    def _store(self, decisions: list[Decision]) -> None:
        for d in decisions:
            row = self.sessions[d.record.id]
            row.update(
                next_nominal_at=d.next_nominal_at,
                next_run_at=d.next_run_at,
                invalid_reason=d.invalid_reason,
                applied_key=d.applied_key,
            )

    def _update(self, run_id: int, **changes: Any) -> None:
        self.runs[run_id] = replace(self.runs[run_id], **changes)

    def _running(self, session_id: int) -> RunView | None:
        for run in self.runs.values():
            if run.session_id == session_id and run.status is RunStatus.RUNNING:
                return run
        return None

    # --- registry ----------------------------------------------------------------------------

    async def add_session(self, spec: SessionSpec, *, enabled: bool = True) -> SessionRecord:
        self._check()
        if any(r["gateway_session_id"] == spec.gateway_session_id for r in self.sessions.values()):
            raise AlreadyExists(
                f"a session with gateway id {spec.gateway_session_id} is already registered"
            )
        session_id = self._next_id()
        self.sessions[session_id] = {
            **SESSION_DEFAULTS,
            "gateway_session_id": spec.gateway_session_id,
            "label": spec.label,
            "enabled": enabled,
            "schedule": spec.schedule_text,
            "jitter_seconds": spec.jitter_seconds,
            "timezone": spec.timezone.key,
            "account_created_at": spec.account_created_at,
            "created_at": self._clock.now(),
        }
        return self._record(session_id)

    async def remove_session(self, gateway_session_id: int) -> None:
        """Delete a session; its runs and ledger places stay, without it (SET NULL)."""
        self._check()
        session_id = self._by_gateway_id(gateway_session_id)
        del self.sessions[session_id]
        self.joined.pop(session_id, None)
        for run in list(self.runs.values()):
            if run.session_id == session_id:
                self._update(run.id, session_id=None)
        for join in self.ledger:
            if join["session_id"] == session_id:
                join["session_id"] = None

    async def list_sessions(self) -> list[SessionRecord]:
        self._check()
        return [self._record(session_id) for session_id in sorted(self.sessions)]

    async def get_session(self, gateway_session_id: int) -> SessionRecord:
        self._check()
        return self._record(self._by_gateway_id(gateway_session_id))

    async def add_channel(self, spec: ChannelSpec) -> ChannelView:
        self._check()
        if any(c["username"] == spec.username for c in self.channels.values()):
            raise AlreadyExists(f"channel @{spec.username} is already in the pool")
        channel_id = self._next_id()
        self.channels[channel_id] = {
            "username": spec.username,
            "title": spec.title,
            "category": spec.category,
            "description": spec.description,
            "enabled": True,
            "invalid_reason": None,
            "flagged_reason": None,
        }
        return self._channel(channel_id)

    async def seed_channels(self, entries: list[ChannelEntry]) -> int:
        if self.channels:
            return 0
        for entry in entries:
            await self.add_channel(
                validate_channel(
                    username=entry.username,
                    title=entry.title,
                    category=entry.category,
                    description=entry.description,
                )
            )
        return len(entries)

    def _channel(self, channel_id: int) -> ChannelView:
        return ChannelView(id=channel_id, **self.channels[channel_id])

    async def list_channels(self) -> list[ChannelView]:
        self._check()
        views = [self._channel(channel_id) for channel_id in self.channels]
        return sorted(views, key=lambda view: str(view.username))

    async def check_channels(self) -> list[tuple[str, str | None]]:
        self._check()
        changed: list[tuple[str, str | None]] = []
        for channel_id, row in self.channels.items():
            try:
                spec = validate_channel(
                    username=row["username"],
                    title=row["title"],
                    category=row["category"],
                    description=row["description"],
                )
                reason = (
                    None
                    if spec.username == row["username"]
                    else f"username {row['username']!r} must be stored as {spec.username!r}"
                )
            except InvalidValue as exc:
                reason = str(exc)
            if reason != row["invalid_reason"]:
                row["invalid_reason"] = reason
                changed.append((str(self.channels[channel_id]["username"]), reason))
        return changed

    async def history(self, gateway_session_id: int, limit: int = 10) -> list[RunView]:
        self._check()
        runs = [r for r in self.runs.values() if r.gateway_session_id == gateway_session_id]
        runs.sort(key=lambda r: (r.started_at, r.id), reverse=True)
        return runs[:limit]

    async def get_run(self, run_id: int) -> RunView:
        self._check()
        if run_id not in self.runs:
            raise NotFound(f"no run with id {run_id}")
        return self.runs[run_id]

    # --- scheduling ---------------------------------------------------------------------------

    async def reconcile(
        self, policy: SlotPolicy, now: datetime, after_id: int, limit: int
    ) -> Reconciled:
        self._check()
        ids = [
            session_id
            for session_id in sorted(self.sessions)
            if session_id > after_id
            and self.sessions[session_id]["applied_key"] != self._key(self.sessions[session_id])
        ][:limit]
        decisions = [policy.reconcile(self._record(session_id), now) for session_id in ids]
        changed = [d for d in decisions if d.changes_row]
        self._store(changed)
        return Reconciled(tuple(changed), len(ids), ids[-1] if ids else after_id)

    async def claim_due(
        self,
        policy: SlotPolicy,
        now: datetime,
        limit: int,
        node: Node,
        due_by: datetime | None = None,
    ) -> Claim:
        self._check()
        cutoff = due_by or now
        due = [
            (row["next_run_at"], session_id)
            for session_id, row in self.sessions.items()
            if isinstance(row["next_run_at"], datetime) and row["next_run_at"] <= cutoff
        ]
        ids = [session_id for _, session_id in sorted(due)][:limit]
        decisions = []
        for session_id in ids:
            running = self._running(session_id)
            decisions.append(
                policy.claim(self._record(session_id), running.id if running else None, now)
            )
        self._store(decisions)
        runs: list[Run] = []
        for d in decisions:
            for slot in d.rows:
                run = self._insert_slot_row(d, slot.status, slot, node, now)
                if run is not None and slot.status is RunStatus.RUNNING and d.session is not None:
                    runs.append(
                        Run(run.id, d.session, Trigger.SCHEDULE, run.due_at, now, run.scheduled_for)
                    )
        return Claim(tuple(decisions), tuple(runs))

    def _insert_slot_row(
        self, decision: Decision, status: RunStatus, slot: Any, node: Node, now: datetime
    ) -> RunView | None:
        session_id = decision.record.id
        conflict = any(
            r.session_id == session_id
            and (
                r.scheduled_for == slot.scheduled_for
                or (status is RunStatus.RUNNING and r.status is RunStatus.RUNNING)
            )
            for r in self.runs.values()
        )
        if conflict:
            return None
        running = status is RunStatus.RUNNING
        row = _new_run(
            id=self._next_id(),
            session_id=session_id,
            gateway_session_id=int(str(decision.record.gateway_session_id)),
            trigger=Trigger.SCHEDULE,
            scheduled_for=slot.scheduled_for,
            next_slot_at=slot.next_slot_at,
            due_at=slot.due_at,
            status=status,
            node=node.name,
            started_at=now,
            heartbeat_at=now if running else None,
            finished_at=None if running else now,
            error=slot.error,
        )
        self.runs[row.id] = row
        self.run_nodes[row.id] = node.id
        return row

    async def next_due_at(self) -> datetime | None:
        self._check()
        due = [
            r["next_run_at"]
            for r in self.sessions.values()
            if isinstance(r["next_run_at"], datetime)
        ]
        return min(due, default=None)

    async def refusals(
        self, session_ids: frozenset[int], now: datetime
    ) -> dict[int, tuple[str, str]]:
        self._check()
        records = {sid: self._record(sid) for sid in session_ids if sid in self.sessions}
        return refusals_of(records, session_ids, now)

    async def reap_stale_runs(self, now: datetime, stale_s: float) -> int:
        self._check()
        expired = {node for node, until in self.leases.items() if until < now}
        reaped = 0
        for run in list(self.runs.values()):
            node = self.run_nodes.get(run.id)
            if run.status is RunStatus.RUNNING and (node in expired or node not in self.leases):
                self._update(run.id, status=RunStatus.INTERRUPTED, finished_at=now, error=REAPED)
                reaped += 1
        for node in expired:
            del self.leases[node]
        self._settle(self._of_ended_run)
        return reaped

    def _of_ended_run(self, join: dict[str, Any]) -> bool:
        run = self.runs.get(join["run_id"])
        return run is None or run.status is not RunStatus.RUNNING

    def _settle(self, chosen: Callable[[dict[str, Any]], bool]) -> None:
        """Settle the places still reserved that ``chosen`` picks: kept where the run's join
        of that channel may have happened, given back everywhere else."""
        for join in self.ledger:
            if join["status"] is not JoinStatus.RESERVED or not chosen(join):
                continue
            run = self.runs.get(join["run_id"])
            username = self.channels.get(join["channel_id"], {}).get("username")
            happened = run is not None and any(
                a.kind is ActionKind.JOIN_CHANNEL
                and a.channel == username
                and a.outcome.may_have_happened
                for a in run.actions
            )
            join["status"] = JoinStatus.JOINED if happened else JoinStatus.RELEASED

    # --- leases ---------------------------------------------------------------------------

    async def register_node(self, name: str, lease_s: float, now: datetime) -> LeaseReading:
        self._check()
        node = Node(self._next_id(), name)
        self.leases[node.id] = now + timedelta(seconds=lease_s)
        return LeaseReading(node, now)

    async def renew_node(self, node: Node, lease_s: float, now: datetime) -> LeaseReading | None:
        self._check()
        if node.id not in self.leases:
            return None
        self.leases[node.id] = now + timedelta(seconds=lease_s)
        return LeaseReading(node, now)

    async def release_node(self, node: Node) -> None:
        self._check()
        self.leases.pop(node.id, None)

    async def delete_history(self, before: datetime, limit: int) -> int:
        self._check()
        old = sorted(
            (
                r
                for r in self.runs.values()
                if r.started_at < before and r.status is not RunStatus.RUNNING
            ),
            key=lambda r: r.started_at,
        )[:limit]
        for run in old:
            del self.runs[run.id]
        return len(old)

    async def counts(self, now: datetime) -> dict[str, int]:
        self._check()
        rows = list(self.sessions.values())
        usable = [r for r in rows if r["invalid_reason"] is None]
        return {
            "sessions": len(rows),
            "scheduled": sum(1 for r in rows if r["next_run_at"] is not None),
            "invalid": len(rows) - len(usable),
            "active": sum(1 for r in usable if r["enabled"] is True and r["state"] == "active"),
            "needs_attention": sum(
                1 for r in usable if r["enabled"] is True and r["state"] == "needs_attention"
            ),
            "disabled": sum(1 for r in usable if r["enabled"] is False),
            "cooling_down": sum(
                1
                for r in usable
                if r["enabled"] is True
                and r["state"] == "active"
                and isinstance(r["cooldown_until"], datetime)
                and r["cooldown_until"] > now
            ),
            "invalid_channels": sum(1 for c in self.channels.values() if c["invalid_reason"]),
            "running": sum(1 for r in self.runs.values() if r.status is RunStatus.RUNNING),
        }

    # --- runs ---------------------------------------------------------------------------------

    async def start_run(
        self, gateway_session_id: int, trigger: Trigger, now: datetime, node: Node
    ) -> Run:
        self._check()
        session_id = self._by_gateway_id(gateway_session_id)
        session = admit(self._record(session_id), now)
        running = self._running(session_id)
        if running is not None:
            raise AlreadyRunning(f"session {gateway_session_id} has run {running.id} in flight")
        row = _new_run(
            id=self._next_id(),
            session_id=session_id,
            gateway_session_id=gateway_session_id,
            trigger=trigger,
            scheduled_for=None,
            next_slot_at=None,
            due_at=now,
            status=RunStatus.RUNNING,
            node=node.name,
            started_at=now,
            heartbeat_at=now,
            finished_at=None,
            error=None,
        )
        self.runs[row.id] = row
        self.run_nodes[row.id] = node.id
        return Run(row.id, session, trigger, now, now)

    async def runs_in_flight(self, node: Node) -> list[RunInFlight]:
        self._check()
        return [
            RunInFlight(
                run.id,
                run.trigger,
                run.due_at,
                run.started_at,
                run.scheduled_for,
                self._record(run.session_id),
            )
            for run in self.runs.values()
            if run.status is RunStatus.RUNNING
            and self.run_nodes.get(run.id) == node.id
            and run.session_id in self.sessions
        ]

    async def planning_facts(self, session: Any, now: datetime) -> PlanningFacts:
        self._check()
        pool = tuple(
            PoolChannel(c["username"], c["category"], c["title"])
            for c in sorted(self.channels.values(), key=lambda c: str(c["username"]))
            if c["enabled"] is True and not c["invalid_reason"] and not c["flagged_reason"]
        )
        joined = frozenset(
            self.channels[channel_id]["username"] for channel_id in self.joined[session.id]
        )
        finished = sorted(
            (
                r
                for r in self.runs.values()
                if r.session_id == session.id and r.status is not RunStatus.RUNNING
            ),
            key=lambda r: (r.started_at, r.id),
            reverse=True,
        )[:RECENT_RUNS]
        channel_joins = {
            row["username"]: held
            for channel_id, row in self.channels.items()
            if (held := self._held(now - PACE_WINDOW, channel_id=channel_id))
        }
        return PlanningFacts(
            pool,
            joined,
            tuple(past_run(run) for run in finished),
            joins_last_24h=self._held(now - RAMP_WINDOW, session_id=session.id),
            channel_joins_last_hour=channel_joins,
        )

    async def set_run_plan(self, run_id: int, plan: StoredPlan) -> None:
        self._check()
        self._update(
            run_id,
            plan_source=plan.source,
            plan_model=plan.model,
            plan=plan.document,
            prompt_tokens=plan.prompt_tokens,
            completion_tokens=plan.completion_tokens,
        )

    async def record_action(self, run_id: int, record: ActionRecord) -> None:
        self._check()
        others = (a for a in self.runs[run_id].actions if a.seq != record.seq)
        self._update(run_id, actions=tuple(sorted((*others, record), key=lambda a: a.seq)))

    async def start_call(
        self, run_id: int, record: ActionRecord, budget_s: float, now: datetime
    ) -> Clearance:
        self._check()
        if self.runs[run_id].status is not RunStatus.RUNNING:
            return Clearance.REAPED
        lease_until = self.leases.get(self.run_nodes.get(run_id, -1))
        if lease_until is None or lease_until <= now + timedelta(seconds=budget_s):
            return Clearance.LEASE_SHORT
        self._update(run_id, heartbeat_at=now)
        await self.record_action(run_id, record)
        return Clearance.CLEARED

    async def finish_run(
        self, run_id: int, status: RunStatus, error: str | None, at: datetime
    ) -> RunStatus:
        self._check()
        run = self.runs[run_id]
        if run.status is RunStatus.RUNNING:
            self._update(run_id, status=status, error=error, finished_at=at, heartbeat_at=at)
            if run.session_id in self.sessions:
                self.sessions[run.session_id]["last_run_at"] = at
        self._settle(lambda join: join["run_id"] == run_id)
        return self.runs[run_id].status

    async def set_cooldown(
        self, session_id: int, until: datetime, wait_s: int, at: datetime
    ) -> None:
        self._check()
        self.sessions[session_id].update(
            cooldown_until=until, flood_wait_at=at, flood_wait_s=wait_s
        )

    async def mark_needs_attention(self, session_id: int, reason: str) -> None:
        self._check()
        self.sessions[session_id].update(
            state=SessionState.NEEDS_ATTENTION.value, state_reason=reason[:500]
        )

    async def note_channel_failure(self, channel: str, code: str, at: datetime) -> str | None:
        self._check()
        sessions = {
            run.gateway_session_id
            for run in self.runs.values()
            for action in run.actions
            if action.channel == channel
            and action.error_code == code
            and action.finished_at >= at - CHANNEL_FLAG_WINDOW
        }
        if len(sessions) < CHANNEL_FLAG_SESSIONS:
            return None
        for row in self.channels.values():
            if row["username"] == channel and row["flagged_reason"] is None:
                row["flagged_reason"] = f"{code} for {len(sessions)} sessions"
                return str(row["flagged_reason"])
        return None

    # --- the join ledger ------------------------------------------------------------------

    def _held(self, since: datetime, other_than: int | None = None, **match: Any) -> int:
        """Places held since ``since`` matching ``match``, leaving out run ``other_than``'s."""
        return sum(
            1
            for join in self.ledger
            if join["reserved_at"] >= since
            and join["status"] is not JoinStatus.RELEASED
            and join["run_id"] != other_than
            and all(join[key] == value for key, value in match.items())
        )

    def _channel_id(self, username: str) -> int | None:
        return next(
            (cid for cid, row in self.channels.items() if row["username"] == username), None
        )

    async def reserve_joins(
        self, run: Run, channels: Sequence[str], limits: JoinLimits, now: datetime
    ) -> dict[str, str | None]:
        self._check()
        # This run's own places are left out of the counts and kept as they are (a retry).
        held = {(join["channel_id"]) for join in self.ledger if join["run_id"] == run.id}
        left = limits.per_day - self._held(
            now - RAMP_WINDOW, other_than=run.id, session_id=run.session.id
        )
        room: dict[int, int] = {}
        verdicts: dict[str, str | None] = {}
        for channel in channels:
            channel_id = self._channel_id(channel)
            if channel_id is not None and channel_id not in room:
                room[channel_id] = limits.per_channel_hour - self._held(
                    now - PACE_WINDOW, other_than=run.id, channel_id=channel_id
                )
            verdicts[channel] = join_verdict(channel_id, left, room, limits)
            if verdicts[channel] is None:
                assert channel_id is not None
                room[channel_id] -= 1
                left -= 1
                if channel_id in held:
                    continue
                self.ledger.append(
                    {
                        "channel_id": channel_id,
                        "session_id": run.session.id,
                        "run_id": run.id,
                        "reserved_at": now,
                        "status": JoinStatus.RESERVED,
                    }
                )
        return verdicts

    async def record_join(self, run: Run, record: ActionRecord) -> None:
        await self.record_action(run.id, record)
        assert record.channel is not None
        channel_id = self._channel_id(record.channel)
        if channel_id is None:
            return
        kept = record.outcome.may_have_happened
        for join in self.ledger:
            if join["run_id"] == run.id and join["channel_id"] == channel_id:
                if join["status"] is JoinStatus.RESERVED:
                    join["status"] = JoinStatus.JOINED if kept else JoinStatus.RELEASED
        if record.outcome is Outcome.OK:
            self.joined[run.session.id].setdefault(channel_id, record.finished_at)

    async def warmth_facts(self, session_id: int, now: datetime) -> WarmthFacts:
        self._check()
        runs = Counter(
            run.status.value
            for run in self.runs.values()
            if run.session_id == session_id and run.started_at >= now - WEEK
        )
        return WarmthFacts(
            joins_last_24h=self._held(now - RAMP_WINDOW, session_id=session_id),
            joins_last_7d=self._held(now - WEEK, session_id=session_id),
            channels_joined=tuple(
                sorted(self.channels[cid]["username"] for cid in self.joined[session_id])
            ),
            runs_last_7d=dict(runs),
        )

    async def sessions_aged(self, now: datetime, days: Sequence[int]) -> list[int]:
        self._check()
        born = [
            read_time(row["account_created_at"] or row["created_at"])
            for row in self.sessions.values()
            if row["enabled"] is True and row["invalid_reason"] is None and row["state"] == "active"
        ]
        return [
            sum(1 for b in born if isinstance(b, datetime) and b <= now - timedelta(days=d))
            for d in days
        ]

    # --- tokens -------------------------------------------------------------------------------

    async def tokens_spent(self, day: date) -> int:
        self._check()
        return self.tokens.get(day, 0)

    async def reserve_tokens(self, day: date, tokens: int, budget: int) -> bool:
        self._check()
        if self.tokens.get(day, 0) + tokens > budget:
            return False
        self.tokens[day] = self.tokens.get(day, 0) + tokens
        return True

    async def spend_tokens(self, day: date, tokens: int) -> None:
        self._check()
        self.tokens[day] = self.tokens.get(day, 0) + tokens
