"""The database goes away under load (a PostgreSQL cluster of the test's own, stopped and
started again). The daemon stays up, says it is not ready and why (``/readyz`` and
systemd's ``STATUS=``), loses nothing it acknowledged, and recovers without a restart."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import pytest

from heatup_daemon.db.leases import REAPED
from heatup_daemon.testing import sandbox_process
from tests.acceptance.daemons import Daemon, NotifySocket, wait_until
from tests.acceptance.postgres import postgres_with_sessions
from tests.faults.conftest import PrivatePostgres
from tests.figures import Report
from tests.judging import assert_promises_kept, query

SESSIONS = 40
PERIOD = timedelta(seconds=10)
ENV = {
    "HEATUP_EXECUTOR__TIME_SCALE": "0.05",
    "HEATUP_SCHEDULER__STALE_RUN_S": "6",
    "HEATUP_SCHEDULER__HEARTBEAT_S": "2",
    # A short lease must still outlast a gateway call: short calls.
    "HEATUP_GATEWAY__READ_TIMEOUT_S": "1",
    "HEATUP_GATEWAY__RETRY_DEADLINE_S": "1.5",
    "HEATUP_SCHEDULER__RECONCILE_S": "1",
    "HEATUP_SCHEDULER__DISPATCH_INTERVAL_S": "0.5",
    "HEATUP_SERVICE__STOP_TIMEOUT_S": "5",
}


def readiness(port: int) -> tuple[int, dict[str, str]]:
    response = httpx2.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
    return response.status_code, response.json()["checks"]


def assert_unavailable_said(port: int) -> None:
    """Not ready, and why; alive; a clear 503 from the API and the console, not a 500."""
    status, checks = readiness(port)
    assert status == 503 and "not available" in checks["database"], checks
    base = f"http://127.0.0.1:{port}"
    assert httpx2.get(f"{base}/healthz").status_code == 200
    reads = httpx2.get(f"{base}/sessions", timeout=30)
    assert reads.status_code == 503 and "database" in reads.json()["detail"], reads.text
    page = httpx2.get(f"{base}/ui", timeout=30)
    assert page.status_code == 503 and "database unavailable" in page.text


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_database_outage_under_load(
    private_postgres: PrivatePostgres, tmp_path: Path, long_variant: bool, report: Report
) -> None:
    outage_s = 60 if long_variant else 15
    url = private_postgres.url
    postgres_with_sessions(url, SESSIONS, "10s", 2)
    audit_path = tmp_path / "audit.jsonl"
    notify = NotifySocket(tmp_path / "notify.sock")
    with sandbox_process("--audit-log", str(audit_path)) as gateway:
        daemon = Daemon(url, gateway, tmp_path, NOTIFY_SOCKET=str(notify.path), **ENV).start()
        try:
            notify.wait_for("READY=1", timeout_s=30)
            wait_until(lambda: int(query(url, "SELECT count(*) FROM warmup_runs")[0][0]) >= 30)
            private_postgres.stop()
            down_at = datetime.now(UTC)
            time.sleep(2)
            assert_unavailable_said(daemon.port)
            said = notify.wait_for_text("database unavailable", timeout_s=15)
            while (datetime.now(UTC) - down_at).total_seconds() < outage_s:
                assert daemon.process is not None and daemon.process.poll() is None
                time.sleep(1)
            restarting_at = datetime.now(UTC)  # from here on, the database may answer
            private_postgres.start()
            up_at = datetime.now(UTC)
            wait_until(lambda: readiness(daemon.port)[0] == 200, timeout_s=30)
            ready_after_s = (datetime.now(UTC) - up_at).total_seconds()
            time.sleep(12)  # the schedule goes on
            code, _ = daemon.stop(timeout_s=60)
        finally:
            daemon.kill()
            notify.close()
    assert code == 0, daemon.output()[-3000:]
    assert "Traceback" not in daemon.output()

    judged = assert_promises_kept(url, audit_path, PERIOD)
    rows = judged.rows
    assert not [r for r in rows if r.status == "running"]
    started_during = [r for r in rows if down_at < r.started_at < restarting_at]
    assert started_during == []  # dispatch paused ...
    after = [r for r in rows if r.status != "skipped" and r.started_at > restarting_at]
    assert after  # ... and resumed by itself
    reaped = [r for r in rows if r.error == REAPED]
    assert reaped == []  # runs the outage held were not taken for dead
    report(
        {
            "outage s": outage_s,
            "STATUS during the outage": next(
                line for line in said.splitlines() if line.startswith("STATUS=")
            )[:160],
            "ready again after the database s": round(ready_after_s, 1),
            "runs started during the outage": len(started_during),
            "runs after it": len(after),
            "runs reaped as dead": len(reaped),
            "runs by status": {
                s: sum(1 for r in rows if r.status == s) for s in {r.status for r in rows}
            },
            **judged.calls,
        }
    )
