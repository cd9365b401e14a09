"""SIGKILL at random moments, restarting each time: at start-up, mid-claim, mid-action,
mid-write. Afterwards no slot has two rows or none, every gateway call that completed is in
the history (ok, or unknown when the process died during it), every run a kill cut ended
``interrupted``, and each session's schedule goes on."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from heatup_daemon.testing import sandbox_process
from tests.acceptance.daemons import Daemon, sqlite_with_sessions
from tests.figures import Report
from tests.judging import (
    assert_every_slot_once,
    assert_no_call_outside_a_run,
    assert_no_completed_call_missing,
    assert_no_overlap,
    load_actions,
    load_audit,
    load_runs,
)

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

    rows = load_runs(f"sqlite+aiosqlite:///{database}")
    audit = load_audit(audit_path)
    assert not [r for r in rows if r.status == "running"]
    slots = assert_every_slot_once(rows, PERIOD)
    assert_no_overlap(rows)
    assert_no_call_outside_a_run(rows, audit)
    calls = assert_no_completed_call_missing(load_actions(f"sqlite+aiosqlite:///{database}"), audit)
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
            "slot rows": slots,
            "runs": sum(1 for r in rows if r.status != "skipped"),
            "runs a kill cut (all interrupted)": len(cut),
            "runs after the last kill": len(after),
            "duplicated or lost slots": 0,
            **calls,
        }
    )
