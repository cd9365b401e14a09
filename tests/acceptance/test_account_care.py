"""Looking after accounts, with real daemons: 200 accounts created today, on a 20 s schedule,
for over a minute of runs. Each joins at most one channel (the ramp's day 0), and no channel
is joined more often than the pool's pace, also when two nodes share one PostgreSQL."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from heatup_daemon.testing import sandbox_process
from tests.acceptance.conftest import HEATUP
from tests.acceptance.daemons import Daemon
from tests.databases import create_postgres_database, drop_postgres_database, postgres_server_url
from tests.judging import query

SESSIONS = 200
PACE = 5  # joins of one channel per hour: 24 pool channels x 5 < 200 sessions, so it binds
RUN_FOR_S = 75
ENV = {
    "HEATUP_EXECUTOR__TIME_SCALE": "0.02",
    "HEATUP_POOL__MAX_JOINS_PER_CHANNEL_PER_HOUR": str(PACE),
    "HEATUP_SCHEDULER__RECONCILE_S": "1",
}


@pytest.fixture(params=["sqlite-1-node", "postgresql-2-nodes"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, int]]:
    if request.param.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'care.db'}", 1
        return
    server = postgres_server_url()
    if server is None:
        pytest.skip("the PostgreSQL variant: no PostgreSQL server (tests/run says so)")
    url = create_postgres_database(server)
    yield url, 2
    drop_postgres_database(server, url)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_new_accounts_and_busy_channels(setup: tuple[str, int], tmp_path: Path) -> None:
    url, nodes = setup
    env = {**os.environ, "HEATUP_DATABASE__URL": url}
    subprocess.run([str(HEATUP), "db", "upgrade"], env=env, check=True, capture_output=True)
    now = "CURRENT_TIMESTAMP"
    query(
        url.replace("sqlite://", "sqlite+aiosqlite://"),
        "INSERT INTO sessions (gateway_session_id, schedule, jitter_seconds, timezone, enabled, "
        f"state, account_created_at) VALUES {_rows(now)}",
    )
    with sandbox_process() as gateway:
        daemons = [
            Daemon(url, gateway, tmp_path, **ENV).start("--node-name", f"node-{n}")
            for n in range(nodes)
        ]
        try:
            time.sleep(RUN_FOR_S)
            scrape = httpx2.get(f"http://127.0.0.1:{daemons[0].port}/metrics").text
            for daemon in daemons:
                assert daemon.stop(timeout_s=30)[0] == 0, daemon.output()[-2000:]
        finally:
            for daemon in daemons:
                daemon.kill()
    database = url.replace("sqlite://", "sqlite+aiosqlite://")
    joins = query(
        database,
        "SELECT r.gateway_session_id, a.channel, a.outcome FROM warmup_actions a "
        "JOIN warmup_runs r ON r.id = a.run_id WHERE a.kind = 'join_channel' "
        "AND a.outcome IN ('ok', 'unknown')",
    )
    runs = int(query(database, "SELECT count(*) FROM warmup_runs WHERE status = 'succeeded'")[0][0])
    per_session = Counter(session for session, _, _ in joins)
    per_channel = Counter(channel for _, channel, _ in joins)
    ledger = Counter(
        channel
        for (channel,) in query(
            database,
            "SELECT c.username FROM channel_joins j JOIN channels c ON c.id = j.channel_id "
            "WHERE j.status != 'released'",
        )
    )
    print(
        f"\n{nodes} node(s): {runs} runs succeeded, {len(joins)} joins by "
        f"{len(per_session)} sessions, busiest channel {per_channel.most_common(1)}"
    )
    assert runs >= SESSIONS * 2  # every session ran, most of them more than once
    assert max(per_session.values()) == 1  # day 0: one join in 24 hours, whatever the runs
    assert max(per_channel.values()) <= PACE and max(ledger.values()) <= PACE
    assert len(joins) == PACE * len(per_channel)  # the pace, not the plans, was the limit
    dropped = re.search(r'heatup_joins_dropped_total\{reason="(\w+)"\} ([0-9.e+]+)', scrape)
    assert dropped is not None
    stage = re.search(r'heatup_sessions_by_ramp_stage\{stage="day_0"\} ([0-9.e+]+)', scrape)
    assert stage is not None and float(stage.group(1)) == SESSIONS


def _rows(now: str) -> str:
    return ", ".join(
        f"({uid}, '20s', 5, 'UTC', true, 'active', {now})" for uid in range(1, SESSIONS + 1)
    )
