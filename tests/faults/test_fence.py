"""The fence: runs in flight, ended behind the daemon's back by plain SQL as another node's
reaper would end them, make no further gateway call. Every call that reaches the gateway
after that moment belongs to an action already cleared before it (on the wire)."""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from heatup_daemon.testing import sandbox_process
from tests.acceptance.daemons import Daemon, sqlite_with_sessions, wait_until
from tests.figures import Report
from tests.judging import load_audit

SESSIONS = 40
# A call cleared just before the end reaches the gateway within this; the next action of a
# run waits a pause of at least 1.5 s (delay_min_s 3 at time scale 0.5) after its last call.
ON_THE_WIRE = timedelta(seconds=1)


def running(database: Path) -> int:
    with sqlite3.connect(database, timeout=10) as db:
        return int(
            db.execute("SELECT count(*) FROM warmup_runs WHERE status = 'running'").fetchone()[0]
        )


@pytest.mark.timeout(180)
def test_runs_ended_by_another_node_make_no_further_call(tmp_path: Path, report: Report) -> None:
    database = tmp_path / "fence.db"
    url = sqlite_with_sessions(database, SESSIONS, "1d", 0)  # each runs once, at the start
    audit_path = tmp_path / "audit.jsonl"
    with sandbox_process("--audit-log", str(audit_path)) as gateway:
        daemon = Daemon(url, gateway, tmp_path, HEATUP_EXECUTOR__TIME_SCALE="0.5").start()
        try:
            wait_until(lambda: running(database) >= SESSIONS // 2, timeout_s=60)
            time.sleep(2)  # they are in the middle of their plans
            with sqlite3.connect(database, timeout=10) as db:
                ended_at = datetime.now(UTC)
                ended = db.execute(
                    "UPDATE warmup_runs SET status = 'interrupted', finished_at = ?, "
                    "error = 'ended by another node' WHERE status = 'running' "
                    "RETURNING gateway_session_id",
                    (ended_at.replace(tzinfo=None).isoformat(sep=" "),),
                ).fetchall()
            time.sleep(15)  # long enough for every run to have tried its next action
            code, _ = daemon.stop()
        finally:
            daemon.kill()
    assert code == 0, daemon.output()[-2000:]
    sessions = {row[0] for row in ended}
    assert len(sessions) >= SESSIONS // 2
    after: dict[int, list[float]] = defaultdict(list)
    for entry in load_audit(audit_path):
        at = datetime.fromisoformat(entry["t"])
        if entry["session"] in sessions and at > ended_at:
            after[entry["session"]].append((at - ended_at).total_seconds())
    late = {
        s: max(seconds)
        for s, seconds in after.items()
        if max(seconds) > ON_THE_WIRE.total_seconds()
    }
    report(
        {
            "runs ended by SQL": len(sessions),
            "sessions with a call on the wire at that moment": len(after),
            "latest such call after the end, s": round(
                max((max(v) for v in after.values()), default=0.0), 3
            ),
            "calls later than the wire allows": len(late),
        }
    )
    assert late == {}, late
    with sqlite3.connect(database) as db:
        statuses = dict(
            db.execute("SELECT status, count(*) FROM warmup_runs GROUP BY status").fetchall()
        )
    assert "running" not in statuses  # the ended runs kept the end they were given
