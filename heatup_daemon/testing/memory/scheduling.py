"""Slots, claims, counts and retention (``db/scheduling.py``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from heatup_daemon.enums import Refusal, RunStatus, Standing, Trigger
from heatup_daemon.records import Claim, Decision, Node, Reconciled, Run, RunView, SessionCounts
from heatup_daemon.session import read_time, refusals_of, standing
from heatup_daemon.stores import SlotPolicy
from heatup_daemon.testing.memory.tables import MemoryTables, new_run


class MemoryScheduling(MemoryTables):
    """Slots, claims, counts and retention (``db/scheduling.py``)."""

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
        row = new_run(
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
    ) -> dict[int, tuple[Refusal, str]]:
        self._check()
        records = {sid: self._record(sid) for sid in session_ids if sid in self.sessions}
        return refusals_of(records, session_ids, now)

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
        # The ledger is trimmed as the database's is: its oldest rows, in batches.
        stale = sorted(
            (j for j in self.ledger if j["reserved_at"] < before), key=lambda j: j["reserved_at"]
        )[:limit]
        self.ledger = [j for j in self.ledger if not any(j is gone for gone in stale)]
        for key in [k for k, (day, _) in self.settlements.items() if day < before.date()][:limit]:
            del self.settlements[key]
            self.settled.discard(key)
        return len(old)

    async def roll_up(self, now: datetime) -> int:
        """Nothing to count: no console reads this store's hourly figures."""
        self._check()
        return 0

    async def sessions_aged(self, now: datetime, days: Sequence[int]) -> list[int]:
        self._check()
        born = [
            read_time(row["account_created_at"] or row["created_at"])
            for session_id, row in self.sessions.items()
            if standing(self._record(session_id)) is Standing.ACTIVE
        ]
        return [
            sum(1 for b in born if isinstance(b, datetime) and b <= now - timedelta(days=d))
            for d in days
        ]

    async def counts(self, now: datetime) -> SessionCounts:
        self._check()
        records = [self._record(session_id) for session_id in self.sessions]
        by_standing = Counter(standing(record) for record in records)
        cooling = [
            r
            for r in records
            if standing(r) is Standing.ACTIVE
            and isinstance(r.cooldown_until, datetime)
            and r.cooldown_until > now
        ]
        return SessionCounts(
            sessions=len(records),
            scheduled=sum(1 for r in records if r.next_run_at is not None),
            cooling_down=len(cooling),
            invalid_channels=sum(1 for c in self.channels.values() if c["invalid_reason"]),
            running=sum(1 for r in self.runs.values() if r.status is RunStatus.RUNNING),
            **{verdict.value: count for verdict, count in by_standing.items()},
        )
