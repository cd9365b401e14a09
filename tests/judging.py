"""Judging what heatup did from what it wrote and what the gateway saw: the promises that the
cluster test and the fault scenarios share."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from heatup_daemon.config.sections import DatabaseSettings
from heatup_daemon.db.engine import create_engine

# Per action kind, the gateway operation whose success completes it.
COMPLETING_CALL = {
    "join_channel": "join_chat",
    "read_messages": "read_history",
    "browse_dialogs": "get_dialogs",
}
# Clock slack between the daemons' timestamps and the sandbox's (one machine), in seconds.
SLACK = timedelta(seconds=0.5)


@dataclass
class Row:
    id: int
    gateway_session_id: int
    status: str
    trigger: str
    scheduled_for: datetime | None
    next_slot_at: datetime | None
    due_at: datetime
    started_at: datetime
    finished_at: datetime | None
    node: str
    error: str | None


def _utc(value: Any) -> Any:
    if isinstance(value, str):  # SQLite's text
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def query(database_url: str, statement: str) -> list[tuple[Any, ...]]:
    """Run ``statement`` on the database as an admin's SQL client would (not through the
    repository), committed; its rows, if it returns any."""

    async def run() -> list[tuple[Any, ...]]:
        engine = create_engine(DatabaseSettings(url=database_url))
        try:
            async with engine.begin() as connection:
                result = await connection.execute(text(statement))
                return [tuple(row) for row in result] if result.returns_rows else []
        finally:
            await engine.dispose()

    return asyncio.run(run())


def load_runs(database_url: str) -> list[Row]:
    columns = (
        "id, gateway_session_id, status, trigger, scheduled_for, next_slot_at, due_at, "
        "started_at, finished_at, node, error"
    )
    rows = query(database_url, f"SELECT {columns} FROM warmup_runs ORDER BY id")
    times = range(4, 9)  # scheduled_for .. finished_at
    return [Row(*(_utc(v) if i in times else v for i, v in enumerate(row))) for row in rows]


def load_actions(database_url: str) -> list[tuple[int, str, str, str | None]]:
    """(gateway session id, kind, outcome, error code) of every action row."""
    return query(
        database_url,
        "SELECT r.gateway_session_id, a.kind, a.outcome, a.error_code FROM warmup_actions a "
        "JOIN warmup_runs r ON r.id = a.run_id",
    )


# A run's first action's start and its last action's end.
Span = tuple[datetime, datetime]


def load_spans(database_url: str) -> dict[int, Span]:
    """Each run's span of actions (``assert_no_overlap``); an action cut by its process's
    death has no end: its start stands for it."""
    rows = query(
        database_url,
        "SELECT run_id, min(started_at), max(coalesce(finished_at, started_at)) "
        "FROM warmup_actions GROUP BY run_id",
    )
    return {run_id: (_utc(first), _utc(last)) for run_id, first, last in rows}


def load_audit(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def assert_every_slot_once(rows: list[Row], period: timedelta) -> int:
    """Each session's slot rows chain (each starts at the previous one's next slot), and a
    row standing for several slots is one a cooldown or a long downtime left. Returns how
    many slot rows there are."""
    by_session: dict[int, list[Row]] = defaultdict(list)
    for row in rows:
        if row.trigger == "schedule":
            by_session[row.gateway_session_id].append(row)
    for slots in by_session.values():
        slots.sort(key=lambda r: r.scheduled_for or datetime.min.replace(tzinfo=UTC))
        for before, after in itertools.pairwise(slots):
            assert after.scheduled_for == before.next_slot_at, (before, after)
        for row in slots:
            assert row.next_slot_at is not None and row.scheduled_for is not None, row
            span = row.next_slot_at - row.scheduled_for
            assert span % period == timedelta(0), row
            if span != period:
                assert row.status == "skipped", row
    return sum(len(slots) for slots in by_session.values())


def assert_no_overlap(rows: list[Row], spans: dict[int, Span] | None = None) -> None:
    """No two runs of one session are in flight at once.

    A row's times are its node's moments before each write, and a claim's write can wait
    (for a connection, on a loaded machine) after its moment was read: a run claimed just
    after the one before it ended can carry a start a little before that end. The database
    itself refuses a second ``running`` row of a session (``uq_warmup_runs_one_running``).
    Given ``spans`` (each run's first action's start and last action's end, ``load_spans``),
    such a pair is judged by what the two runs did: the later one's first call after the
    earlier one's last (a run that made no call overlaps nothing)."""
    by_session: dict[int, list[Row]] = defaultdict(list)
    for row in rows:
        if row.status != "skipped":
            by_session[row.gateway_session_id].append(row)
    for runs in by_session.values():
        runs.sort(key=lambda r: r.started_at)
        for before, after in itertools.pairwise(runs):
            assert before.finished_at is not None, before
            if before.finished_at <= after.started_at:
                continue
            assert spans is not None, (before, after)
            did, does = spans.get(before.id), spans.get(after.id)  # a run that made no call
            assert did is None or does is None or did[1] <= does[0], (before, after, did, does)


def assert_no_call_outside_a_run(rows: list[Row], audit: list[dict[str, Any]]) -> None:
    """Every gateway call falls within the life of a run of its session (a reaped run ends
    when it is reaped), and none lands during a flood wait."""
    windows: dict[int, list[tuple[datetime, datetime]]] = defaultdict(list)
    for row in rows:
        if row.status != "skipped" and row.finished_at is not None:
            windows[row.gateway_session_id].append((row.started_at, row.finished_at))
    orphans = [
        entry
        for entry in audit
        if entry["session"] is not None
        and not any(
            start - SLACK <= _utc(entry["t"]) <= end + SLACK
            for start, end in windows[entry["session"]]
        )
    ]
    assert orphans == [], orphans[:5]
    landed = [entry for entry in audit if entry["during_flood"]]
    assert landed == [], landed[:5]


def assert_no_completed_call_missing(
    actions: list[tuple[int, str, str, str | None]], audit: list[dict[str, Any]]
) -> dict[str, int]:
    """Every action the gateway completed has its row in the history, as ok or (when the
    process died during the call) unknown; and no row says ok for a call that did not
    complete. Returns the counts compared."""
    completing = set(COMPLETING_CALL.values())
    completed: Counter[tuple[int, str]] = Counter(
        (entry["session"], entry["op"])
        for entry in audit
        if entry["outcome"] == "ok" and entry["op"] in completing
    )
    ok: Counter[tuple[int, str]] = Counter()
    unknown: Counter[tuple[int, str]] = Counter()
    for session, kind, outcome, _ in actions:
        if kind in COMPLETING_CALL:
            key = (session, COMPLETING_CALL[kind])
            if outcome == "ok":
                ok[key] += 1
            elif outcome == "unknown":
                unknown[key] += 1
    missing = {key: n for key, n in completed.items() if n > ok[key] + unknown[key]}
    assert missing == {}, f"completed gateway calls missing from the history: {missing}"
    invented = {key: n for key, n in ok.items() if n > completed[key]}
    assert invented == {}, f"actions recorded ok that the gateway never completed: {invented}"
    return {
        "completed calls": sum(completed.values()),
        "rows ok": sum(ok.values()),
        "rows unknown": sum(unknown.values()),
    }


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * share), len(ordered) - 1)] if ordered else 0.0


@dataclass(frozen=True)
class Judged:
    """What a scenario left behind (the runs, the action rows, the gateway's audit), once the
    promises every scenario shares held; ``slot_rows`` and ``calls`` are their counts."""

    rows: list[Row]
    actions: list[tuple[int, str, str, str | None]]
    audit: list[dict[str, Any]]
    slot_rows: int
    calls: dict[str, int]


def assert_promises_kept(database_url: str, audit_path: Path, period: timedelta) -> Judged:
    """The promises the fault scenarios and the cluster test share, judged from the database
    and the sandbox gateway's audit log: every slot has exactly one row, no two runs of a
    session overlap, no gateway call falls outside a run of its session (nor in a flood
    wait), and every call the gateway completed is in the history."""
    rows, actions = load_runs(database_url), load_actions(database_url)
    audit = load_audit(audit_path)
    slot_rows = assert_every_slot_once(rows, period)
    assert_no_overlap(rows, load_spans(database_url))
    assert_no_call_outside_a_run(rows, audit)
    calls = assert_no_completed_call_missing(actions, audit)
    return Judged(rows, actions, audit, slot_rows, calls)
