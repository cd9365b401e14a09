"""The in-memory store's tables and what every part of it reads them with."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from heatup_daemon.enums import ActionKind, JoinStatus, RunStatus, SessionState
from heatup_daemon.errors import DatabaseUnavailable, NotFound
from heatup_daemon.records import ActionRecord, ChannelView, Decision, RunView
from heatup_daemon.scheduling.slots import admin_key_of
from heatup_daemon.session import TIME_FIELDS, SessionRecord, read_time
from heatup_daemon.timing.clock import Clock, SystemClock

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


def new_run(**fields: Any) -> RunView:
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


class MemoryTables:
    """The rows, one dictionary a table, as the database would hold them."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.sessions: dict[int, dict[str, Any]] = {}
        self.channels: dict[int, dict[str, Any]] = {}
        self.joined: dict[int, dict[int, datetime]] = defaultdict(dict)
        self.runs: dict[int, RunView] = {}
        self.ledger: list[dict[str, Any]] = []  # the join ledger's rows
        self.tokens: dict[date, int] = {}
        # Token reservations by key: (day, reserved); the keys settled.
        self.settlements: dict[str, tuple[date, int]] = {}
        self.settled: set[str] = set()
        self.leases: dict[int, datetime] = {}  # node id -> lease_until
        self.node_names: dict[int, str] = {}  # node id -> its name, as the nodes table keeps
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

    def _key(self, row: dict[str, Any]) -> str:
        return admin_key_of(row)

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

    def _channel(self, channel_id: int) -> ChannelView:
        return ChannelView(id=channel_id, **self.channels[channel_id])

    def _channel_id(self, username: str) -> int | None:
        return next(
            (cid for cid, row in self.channels.items() if row["username"] == username), None
        )

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

    def _write_action(self, run_id: int, record: ActionRecord) -> None:
        others = (a for a in self.runs[run_id].actions if a.seq != record.seq)
        self._update(run_id, actions=tuple(sorted((*others, record), key=lambda a: a.seq)))

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
