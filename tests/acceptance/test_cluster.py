"""Three ``heatup run`` nodes on one PostgreSQL database, started at the same moment on a fresh
database, with three SIGKILLs of different nodes while runs are in flight (two of the nodes
restarted). Judged from the database and the sandbox gateway's audit log: every slot of every
session has exactly one row, no two runs of a session overlap, the killed nodes' runs end
``interrupted`` within the reaper's bound, the survivors carry on, and no gateway call is made
for a run outside its lifetime."""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from heatup_daemon.testing import sandbox_process
from tests.acceptance.conftest import HEATUP
from tests.acceptance.daemons import SQL, Daemon, answers, wait_until
from tests.acceptance.postgres import fresh_postgres_database, insert_sessions
from tests.judging import Judged, Row, assert_promises_kept, percentile

SESSIONS = 300
PERIOD = timedelta(seconds=20)
STALE_S = 6.0
HEARTBEAT_S = 2.0  # also the reaper's interval
NODE_ENV = {
    "HEATUP_EXECUTOR__TIME_SCALE": "0.02",
    "HEATUP_SCHEDULER__STALE_RUN_S": str(STALE_S),
    "HEATUP_SCHEDULER__HEARTBEAT_S": str(HEARTBEAT_S),
    # A short lease must still outlast a gateway call: short calls.
    "HEATUP_GATEWAY__READ_TIMEOUT_S": "1",
    "HEATUP_GATEWAY__RETRY_DEADLINE_S": "1.5",
    "HEATUP_SCHEDULER__RECONCILE_S": "1",
    "HEATUP_SCHEDULER__DISPATCH_INTERVAL_S": "0.5",
    "HEATUP_SERVICE__STOP_TIMEOUT_S": "3",
    "HEATUP_DATABASE__POOL_SIZE": "5",
}


@pytest.fixture
def cluster_database() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


def kill_with_runs_in_flight(sql: SQL, daemon: Daemon, node: str) -> datetime:
    """SIGKILL ``daemon`` once it has runs in flight; when it was killed."""
    wait_until(
        lambda: (
            int(
                sql(
                    f"SELECT count(*) FROM warmup_runs WHERE node = '{node}' AND status = 'running'"
                )[0][0]
            )
            >= 2
        ),
        timeout_s=30,
        interval_s=0.2,
    )
    killed_at = datetime.now(UTC)
    daemon.kill()
    return killed_at


def start_node(url: str, gateway: str, folder: Path, node: str) -> Daemon:
    daemon = Daemon(url, gateway, folder, **NODE_ENV)
    return daemon.start("--node-name", node)


def wait_ready(daemon: Daemon) -> None:
    wait_until(
        lambda: (
            answers(f"http://127.0.0.1:{daemon.port}/healthz")
            or (daemon.process is not None and daemon.process.poll() is not None)
        ),
        timeout_s=30,
    )
    assert daemon.process is not None and daemon.process.poll() is None, daemon.output()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_three_nodes_three_kills_every_slot_once(cluster_database: str, tmp_path: Path) -> None:
    audit_path = tmp_path / "audit.jsonl"
    sql = SQL(cluster_database)
    env = {"HEATUP_DATABASE__URL": cluster_database}
    # Each node's ExecStartPre: three upgrades of a fresh database at once.
    upgrades = [
        subprocess.Popen(
            [str(HEATUP), "db", "upgrade"],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(3)
    ]
    for upgrade in upgrades:
        out, _ = upgrade.communicate(timeout=60)
        assert upgrade.returncode == 0, out.decode()
    insert_sessions(cluster_database, SESSIONS, "20s", 5)
    nodes: dict[str, Daemon] = {}
    kills: dict[str, datetime] = {}
    try:
        with sandbox_process("--audit-log", str(audit_path)) as gateway:
            # Three nodes started together on a pool nobody has seeded yet.
            for node in ("node-a", "node-b", "node-c"):
                nodes[node] = start_node(cluster_database, gateway, tmp_path, node)
            for daemon in nodes.values():
                wait_ready(daemon)
            time.sleep(8)
            for node, restart in (("node-a", True), ("node-b", True), ("node-c", False)):
                kills[node] = kill_with_runs_in_flight(sql, nodes[node], node)
                time.sleep(4)
                if restart:
                    nodes[node] = start_node(cluster_database, gateway, tmp_path, node)
                    wait_ready(nodes[node])
                time.sleep(6)
            time.sleep(STALE_S + 2 * HEARTBEAT_S + 4)  # the last kill's runs are reaped
            for node in ("node-a", "node-b"):
                code, _ = nodes[node].stop(timeout_s=30)
                assert code == 0, nodes[node].output()
    finally:
        for daemon in nodes.values():
            daemon.kill()

    figures = judge(assert_promises_kept(cluster_database, audit_path, PERIOD), kills)
    print("\n" + "\n".join(f"{name}: {value}" for name, value in figures.items()))
    channels = int(sql("SELECT count(*) FROM channels")[0][0])
    assert channels > 0  # seeded once, by whichever node came first, without a crash
    for daemon in nodes.values():
        assert "Traceback" not in daemon.output(), daemon.output()[-3000:]


def judge(judged: Judged, kills: dict[str, datetime]) -> dict[str, Any]:
    """Assert the cluster's own promises beside the shared ones; the figures to print."""
    rows = judged.rows
    assert all(row.status != "running" for row in rows), "runs left running"
    assert {row.gateway_session_id for row in rows} == set(range(1, SESSIONS + 1))
    reap_delays = assert_killed_runs_reaped(rows, kills)
    lags = [
        (r.started_at - r.due_at).total_seconds()
        for r in rows
        if r.trigger == "schedule" and r.status != "skipped"
    ]
    skipped = Counter(
        (r.error or "").split(":")[0].split(" ")[0] for r in rows if r.status == "skipped"
    )
    return {
        "runs by node": dict(Counter(r.node for r in rows if r.status != "skipped")),
        "slot rows": judged.slot_rows,
        "skipped rows by reason": dict(skipped),
        "interrupted by the kills": len(reap_delays),
        "reaped after the kill, max s": round(max(reap_delays), 2),
        "dispatch lag p50 s": round(percentile(lags, 0.5), 3),
        "dispatch lag p99 s": round(percentile(lags, 0.99), 3),
        "gateway calls": len(judged.audit),
        **judged.calls,
    }


def assert_killed_runs_reaped(rows: list[Row], kills: dict[str, datetime]) -> list[float]:
    """Every run a kill cut ends interrupted within the reaper's bound; the survivors go on."""
    delays = []
    for node, killed_at in kills.items():
        victims = [
            r
            for r in rows
            if r.node == node and r.status == "interrupted" and r.started_at < killed_at
        ]
        assert victims, f"no run of {node} was in flight when it was killed"
        for run in victims:
            assert run.finished_at is not None
            delays.append((run.finished_at - killed_at).total_seconds())
            assert delays[-1] <= STALE_S + HEARTBEAT_S + 1, (node, run)
    last_kill = max(kills.values())
    survivors = Counter(r.node for r in rows if r.status != "skipped" and r.started_at > last_kill)
    assert survivors["node-a"] > 0 and survivors["node-b"] > 0
    return delays
