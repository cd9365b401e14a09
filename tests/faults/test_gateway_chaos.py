"""A gateway in trouble: 20 % 5xx, 5 % requests that hang past the client's timeout, 2 %
connections dropped mid-body, and random flood waits. The daemon stays up, records every
failure with its code, never calls during a flood wait, and retries within its bounds."""

from __future__ import annotations

import bisect
import sqlite3
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest

from heatup_daemon.testing import sandbox_process
from tests.acceptance.daemons import Daemon, sqlite_with_sessions
from tests.figures import Report
from tests.judging import assert_promises_kept

SESSIONS = 30
PERIOD = timedelta(seconds=10)
ATTEMPTS = 3
FAULTS = "5xx=0.2,hang=0.05,drop=0.02,flood=0.02,flood_s=2-8s,hang_s=5,seed=3"
TRANSIENT = {"5xx", "429", "hang", "drop", "nonjson"}
ENV = {
    "HEATUP_EXECUTOR__TIME_SCALE": "0.02",
    "HEATUP_GATEWAY__READ_TIMEOUT_S": "0.5",
    "HEATUP_GATEWAY__RETRY_DEADLINE_S": "3",
    "HEATUP_GATEWAY__RETRY_ATTEMPTS": str(ATTEMPTS),
    "HEATUP_GATEWAY__RETRY_BACKOFF_INITIAL_S": "0.05",
    "HEATUP_GATEWAY__RETRY_BACKOFF_MAX_S": "0.2",
    "HEATUP_SCHEDULER__RECONCILE_S": "1",
}


def most_attempts_for_one_call(database: Path, audit: list[dict[str, Any]]) -> int:
    """The most requests one gateway operation made within one action: the attempts of one
    call, retries included. Each request is placed in the action whose time span holds it."""
    with sqlite3.connect(database) as db:
        spans = db.execute(
            "SELECT r.gateway_session_id, a.started_at, a.finished_at FROM warmup_actions a "
            "JOIN warmup_runs r ON r.id = a.run_id WHERE a.finished_at IS NOT NULL "
            "ORDER BY a.started_at"
        ).fetchall()
    starts: dict[int, list[datetime]] = defaultdict(list)
    ends: dict[int, list[datetime]] = defaultdict(list)
    for session, started, finished in spans:
        starts[session].append(datetime.fromisoformat(started).replace(tzinfo=UTC))
        ends[session].append(datetime.fromisoformat(finished).replace(tzinfo=UTC))
    attempts: Counter[tuple[int, int, str]] = Counter()
    for entry in audit:
        at = datetime.fromisoformat(entry["t"])
        index = bisect.bisect_right(starts[entry["session"]], at) - 1
        if index >= 0 and at <= ends[entry["session"]][index]:
            attempts[(entry["session"], index, entry["op"])] += 1
    assert attempts, "no gateway request fell inside an action"
    return max(attempts.values())


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_gateway_in_trouble(tmp_path: Path, long_variant: bool, report: Report) -> None:
    duration_s = 300 if long_variant else 40
    database = tmp_path / "chaos.db"
    url = sqlite_with_sessions(database, SESSIONS, "10s", 3)
    audit_path = tmp_path / "audit.jsonl"
    with sandbox_process("--audit-log", str(audit_path), "--faults", FAULTS) as gateway:
        daemon = Daemon(url, gateway, tmp_path, **ENV).start()
        try:
            deadline = time.monotonic() + duration_s
            while time.monotonic() < deadline:
                assert daemon.process is not None and daemon.process.poll() is None
                time.sleep(1)
            health = httpx2.get(f"http://127.0.0.1:{daemon.port}/healthz", timeout=5)
            assert health.status_code == 200
            code, _ = daemon.stop(timeout_s=60)
        finally:
            daemon.kill()
    assert code == 0, daemon.output()[-3000:]
    assert "Traceback" not in daemon.output()

    # No call outside a run, and none during a flood wait.
    judged = assert_promises_kept(f"sqlite+aiosqlite:///{database}", audit_path, PERIOD)
    rows, actions, audit = judged.rows, judged.actions, judged.audit
    failed = [a for a in actions if a[2] == "failed"]
    assert all(code is not None for *_, code in failed), "a failure without its code"
    retries = most_attempts_for_one_call(database, audit)
    assert retries <= ATTEMPTS
    codes = Counter(code for *_, code in failed)
    injected = Counter(e["outcome"] for e in audit if e["outcome"] in TRANSIENT | {"FLOOD_WAIT"})
    assert codes["transient"] > 0 and codes["FLOOD_WAIT"] > 0
    report(
        {
            "seconds": duration_s,
            "gateway requests": len(audit),
            "faults injected": dict(injected),
            "runs": sum(1 for r in rows if r.status != "skipped"),
            "runs by status": dict(Counter(r.status for r in rows)),
            "actions by outcome": dict(Counter(a[2] for a in actions)),
            "failures by code": dict(codes),
            "most attempts for one call": retries,
            "calls during a flood wait": 0,
            **judged.calls,
        }
    )
