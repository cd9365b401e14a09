"""SIGKILL at random moments, restarting each time: at start-up, mid-claim, mid-action,
mid-write. Afterwards no slot has two rows or none, every gateway call that completed is in
the history (ok, or unknown when the process died during it), every run a kill cut ended
``interrupted``, and each session's schedule goes on."""

from __future__ import annotations

import contextlib
import random
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from heatup_daemon.testing import sandbox_process
from tests.acceptance.daemons import Daemon, sqlite_with_sessions, wait_until
from tests.figures import Report
from tests.judging import assert_promises_kept, load_runs

SESSIONS = 20
PERIOD = timedelta(seconds=10)
STALE_S = 5.0
ENV = {
    "HEATUP_EXECUTOR__TIME_SCALE": "0.05",
    "HEATUP_SCHEDULER__STALE_RUN_S": str(STALE_S),
    "HEATUP_SCHEDULER__HEARTBEAT_S": "0.5",
    # A short lease must still outlast a gateway call: short calls.
    "HEATUP_GATEWAY__READ_TIMEOUT_S": "1",
    "HEATUP_GATEWAY__RETRY_DEADLINE_S": "2",
    "HEATUP_SCHEDULER__RECONCILE_S": "1",
    "HEATUP_SCHEDULER__DISPATCH_INTERVAL_S": "0.5",
}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_at_random_moments(tmp_path: Path, long_variant: bool, report: Report) -> None:
    kills = 50 if long_variant else 10
    rng = random.Random(20261126)
    database = tmp_path / "crash.db"
    url = sqlite_with_sessions(database, SESSIONS, "10s", 2)
    audit_path = tmp_path / "audit.jsonl"
    killed_at: list[datetime] = []
    with sandbox_process("--audit-log", str(audit_path)) as gateway:
        for _ in range(kills):
            daemon = Daemon(url, gateway, tmp_path, **ENV).start()
            time.sleep(rng.uniform(0.3, 4.0))  # from before READY to well into the runs
            killed_at.append(datetime.now(UTC))
            daemon.kill()
        last = Daemon(url, gateway, tmp_path, **ENV).start()
        time.sleep(STALE_S + 6)  # the last kill's runs are reaped; the schedule goes on
        code, _ = last.stop()
    assert code == 0, last.output()[-3000:]
    assert "Traceback" not in last.output()

    judged = assert_promises_kept(f"sqlite+aiosqlite:///{database}", audit_path, PERIOD)
    rows = judged.rows
    assert not [r for r in rows if r.status == "running"]
    cut = [
        r
        for r in rows
        if r.status != "skipped"
        and any(r.started_at < moment < (r.finished_at or moment) for moment in killed_at)
    ]
    assert all(r.status == "interrupted" for r in cut), [
        r for r in cut if r.status != "interrupted"
    ]
    after = [r for r in rows if r.status != "skipped" and r.started_at > killed_at[-1]]
    assert after, "the schedule did not go on after the last kill"
    report(
        {
            "kills": kills,
            "slot rows": judged.slot_rows,
            "runs": sum(1 for r in rows if r.status != "skipped"),
            "runs a kill cut (all interrupted)": len(cut),
            "runs after the last kill": len(after),
            "duplicated or lost slots": 0,
            **judged.calls,
        }
    )


def running_runs(database: Path) -> set[int]:
    with contextlib.closing(sqlite3.connect(database, timeout=10)) as db:
        return {row[0] for row in db.execute("SELECT id FROM warmup_runs WHERE status = 'running'")}


@pytest.mark.timeout(120)
def test_a_restart_ends_its_killed_predecessors_runs_at_once(
    tmp_path: Path, report: Report
) -> None:
    """The lease as shipped (120 s): a daemon restarted on the same host ends the runs its
    killed predecessor left ``running`` as soon as it starts, not when that lease runs out."""
    database = tmp_path / "succession.db"
    url = sqlite_with_sessions(database, SESSIONS, "10s", 2)
    env = {"HEATUP_EXECUTOR__TIME_SCALE": "0.1"}  # runs of several seconds
    with sandbox_process() as gateway:
        first = Daemon(url, gateway, tmp_path, **env).start()
        try:
            wait_until(lambda: len(running_runs(database)) >= 3, timeout_s=30)
        finally:
            first.kill()
        killed_at = time.monotonic()
        cut = running_runs(database)
        second = Daemon(url, gateway, tmp_path, **env).start()
        try:
            wait_until(lambda: not cut & running_runs(database), timeout_s=60, interval_s=0.05)
            ended_after_s = time.monotonic() - killed_at
            code, _ = second.stop()
        finally:
            second.kill()
    assert code == 0, second.output()[-3000:]
    ended = [r for r in load_runs(url) if r.id in cut]
    assert cut and all(r.status == "interrupted" for r in ended), ended
    assert all("successor" in (r.error or "") for r in ended), ended
    assert "stopped on this host without ending its runs" in second.output()
    assert ended_after_s < 20, ended_after_s
    report({"runs the kill cut": len(cut), "ended after the kill s": round(ended_after_s, 1)})
