"""``heatup run`` as operators run it: a real process against ``heatup sandbox``, systemd's
notify protocol on a real AF_UNIX socket, admin edits through plain SQL clients."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from heatup_daemon.testing import sandbox_process
from tests.acceptance.conftest import HEATUP, REPO, Heatup
from tests.acceptance.daemons import FAST, SQL, Daemon, NotifySocket, wait_until
from tests.tools import tool


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with sandbox_process() as url:
        yield url


@pytest.fixture
def gateway_url(sandbox_url: str) -> str:
    """The module's sandbox, its world reset (joins, flood waits) for each test."""
    httpx2.post(f"{sandbox_url}/_sandbox/reset").raise_for_status()
    return sandbox_url


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.kill()


def add(heatup: Heatup, gateway_id: int, schedule: str = "1h", jitter: int = 0) -> None:
    result = heatup(
        "sessions",
        "add",
        "--gateway-id",
        str(gateway_id),
        "--schedule",
        schedule,
        "--jitter",
        str(jitter),
    )
    assert result.code == 0, result.stderr


def test_once_runs_what_is_due_then_exits(
    heatup: Heatup, database_url: str, gateway_url: str
) -> None:
    assert heatup("db", "upgrade").code == 0
    for gateway_id in (1, 2, 3):
        add(heatup, gateway_id)
    env = {**FAST, "HEATUP_GATEWAY__BASE_URL": gateway_url}
    first = heatup("run", "--once", env=env)
    assert first.code == 0, first.stdout + first.stderr
    sql = SQL(database_url)
    assert sql(
        "SELECT gateway_session_id, count(*) FROM warmup_runs GROUP BY gateway_session_id "
        "ORDER BY gateway_session_id"
    ) == [["1", "1"], ["2", "1"], ["3", "1"]]
    assert heatup("run", "--once", env=env).code == 0
    assert sql("SELECT count(*) FROM warmup_runs") == [["3"]]  # nothing was due again
    assert sql("SELECT DISTINCT status, trigger FROM warmup_runs") == [["succeeded", "schedule"]]


def test_the_daemon_lives_and_stops_as_systemd_expects(
    heatup: Heatup, database_url: str, gateway_url: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    assert heatup("db", "upgrade").code == 0
    add(heatup, 10)
    notify = NotifySocket(tmp_path / "notify.sock")
    daemon = Daemon(
        database_url, gateway_url, tmp_path, NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="1000000"
    )
    daemons.append(daemon.start())
    try:
        ready = notify.wait_for("READY=1")
        # READY waits on no count of the whole table: the first count may come just after.
        assert re.search(
            r"STATUS=(\d+ of \d+ sessions scheduled|counting sessions), \d+ runs in flight", ready
        )
        notify.wait_for("WATCHDOG=1", timeout_s=3)
        sql = SQL(database_url)
        wait_until(
            lambda: sql("SELECT count(*) FROM warmup_runs WHERE gateway_session_id = 10") == [["1"]]
        )

        # An admin adds a session, and a broken one, with plain SQL while the daemon runs.
        sql(
            "INSERT INTO sessions (gateway_session_id, schedule, jitter_seconds, timezone, "
            f"enabled, state) VALUES (11, '1h', 0, 'UTC', {sql.true and 'true'}, 'active')"
        )
        sql(
            "INSERT INTO sessions (gateway_session_id, schedule, jitter_seconds, timezone, "
            "enabled, state) VALUES (12, 'whenever', 0, 'UTC', true, 'active')"
        )
        wait_until(
            lambda: (
                sql("SELECT status FROM warmup_runs WHERE gateway_session_id = 11")
                == [["succeeded"]]
            ),
            timeout_s=10,
        )
        reason = wait_until(
            lambda: sql("SELECT invalid_reason FROM sessions WHERE gateway_session_id = 12")[0][0]
        )
        assert "neither an interval" in reason
    finally:
        code, seconds = daemon.stop()
    notify.wait_for("STOPPING=1", timeout_s=2)
    notify.close()
    assert code == 0 and seconds < 5, daemon.output()
    assert SQL(database_url)("SELECT count(*) FROM warmup_runs WHERE status = 'running'") == [["0"]]
    logged = daemon.output()
    assert '"level": "warning"' in logged and "session row" in logged  # the bad row, once
    assert logged.count("is not usable") == 1


def test_sigterm_the_moment_it_is_ready_stops_it_cleanly(
    heatup: Heatup, database_url: str, gateway_url: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    """systemd may stop a unit as soon as it reports READY=1: heatup's own handler must
    already be there, not the default action that kills the process."""
    assert heatup("db", "upgrade").code == 0
    for gateway_id in range(20, 40):
        add(heatup, gateway_id, "10s", 9)
    codes = []
    for attempt in range(4):
        notify = NotifySocket(tmp_path / f"notify-{attempt}.sock")
        daemon = Daemon(database_url, gateway_url, tmp_path, NOTIFY_SOCKET=str(notify.path))
        daemons.append(daemon.start())
        try:
            notify.wait_for("READY=1")
        finally:
            codes.append(daemon.stop()[0])
            notify.close()
    assert codes == [0, 0, 0, 0], daemon.output()[-2000:]
    assert SQL(database_url)("SELECT count(*) FROM warmup_runs WHERE status = 'running'") == [["0"]]


def test_sigterm_under_load(
    heatup: Heatup, database_url: str, gateway_url: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    assert heatup("db", "upgrade").code == 0
    for gateway_id in range(100, 130):
        add(heatup, gateway_id)
    daemon = Daemon(
        database_url,
        gateway_url,
        tmp_path,
        HEATUP_EXECUTOR__TIME_SCALE="1",
        HEATUP_PLANNER__READ_MIN_S="30",
        HEATUP_PLANNER__READ_MAX_S="40",
        HEATUP_PLANNER__IDLE_MIN_S="30",
        HEATUP_PLANNER__IDLE_MAX_S="40",
    )
    daemons.append(daemon.start())
    sql = SQL(database_url)
    wait_until(
        lambda: int(sql("SELECT count(*) FROM warmup_runs WHERE status = 'running'")[0][0]) >= 25
    )
    code, seconds = daemon.stop()
    assert code == 0, daemon.output()
    assert seconds < 3 + 2  # service.stop_timeout_s plus the last writes
    assert sql("SELECT count(*) FROM warmup_runs WHERE status = 'running'") == [["0"]]
    assert int(sql("SELECT count(*) FROM warmup_runs WHERE status = 'interrupted'")[0][0]) >= 25


def test_restart_after_downtime_skips_and_does_not_stampede(
    heatup: Heatup, database_url: str, gateway_url: str
) -> None:
    assert heatup("db", "upgrade").code == 0
    for gateway_id in (20, 21, 22):
        add(heatup, gateway_id)
    env = {**FAST, "HEATUP_GATEWAY__BASE_URL": gateway_url}
    assert heatup("run", "--once", env=env).code == 0
    sql = SQL(database_url)
    # Downtime: each session's slot is now 3 h 10 min in the past (beyond the grace). These
    # columns are heatup's: on SQLite, keep the text form heatup writes them in.
    shift = (
        "strftime('%Y-%m-%d %H:%M:%f000', next_run_at, '-190 minutes')"
        if sql.true == "1"
        else "next_run_at - interval '190 minutes'"
    )
    nominal = shift.replace("next_run_at", "next_nominal_at")
    sql(f"UPDATE sessions SET next_run_at = {shift}, next_nominal_at = {nominal}")
    assert heatup("run", "--once", env=env).code == 0
    rows = sql("SELECT gateway_session_id, status FROM warmup_runs ORDER BY id")
    assert sorted(rows) == [
        ["20", "skipped"],
        ["20", "succeeded"],
        ["21", "skipped"],
        ["21", "succeeded"],
        ["22", "skipped"],
        ["22", "succeeded"],
    ]
    errors = sql("SELECT error FROM warmup_runs WHERE status = 'skipped'")
    assert all("heatup was not running" in e[0] for e in errors)
    assert heatup("run", "--once", env=env).code == 0
    assert sql("SELECT count(*) FROM warmup_runs") == [["6"]]  # the schedule goes on from now


def test_cli_and_schedule_never_run_a_session_twice_at_once(
    heatup: Heatup, database_url: str, gateway_url: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    assert heatup("db", "upgrade").code == 0
    add(heatup, 30, schedule="10s")
    slow = {"HEATUP_EXECUTOR__TIME_SCALE": "0.02"}
    daemon = Daemon(database_url, gateway_url, tmp_path, **slow)
    daemons.append(daemon.start())
    env = {"HEATUP_GATEWAY__BASE_URL": gateway_url, **slow}
    for _ in range(4):
        heatup("warmup", "30", env=env)  # races the schedule; refused while a run is in flight
    assert daemon.stop()[0] == 0
    runs = SQL(database_url)(
        "SELECT started_at, finished_at, status FROM warmup_runs "
        "WHERE status <> 'skipped' ORDER BY started_at"
    )
    assert len(runs) >= 2
    for (_, finished, _), (started, _, _) in itertools.pairwise(runs):
        assert finished <= started, runs  # one after the other, never overlapping


def test_a_second_daemon_on_one_sqlite_file_is_refused(
    tmp_path: Path, gateway_url: str, daemons: list[Daemon]
) -> None:
    url = f"sqlite:///{tmp_path / 'one.db'}"
    subprocess.run(
        [str(HEATUP), "db", "upgrade"],
        env={**os.environ, "HEATUP_DATABASE__URL": url},
        check=True,
        capture_output=True,
    )
    notify = NotifySocket(tmp_path / "n.sock")
    first = Daemon(url, gateway_url, tmp_path, NOTIFY_SOCKET=str(notify.path))
    daemons.append(first.start())
    notify.wait_for("READY=1")
    second = Daemon(url, gateway_url, tmp_path)
    daemons.append(second.start())
    assert second.process is not None and second.process.wait(timeout=20) == 1
    assert "another heatup daemon is running on" in second.output()
    assert first.process is not None and first.process.poll() is None
    assert first.stop()[0] == 0
    notify.close()


def test_an_unmigrated_database_is_refused(tmp_path: Path, gateway_url: str) -> None:
    daemon = Daemon(f"sqlite:///{tmp_path / 'new.db'}", gateway_url, tmp_path).start()
    assert daemon.process is not None and daemon.process.wait(timeout=20) == 1
    assert "run `heatup db upgrade`" in daemon.output()


def test_the_unit_file_verifies_and_is_hardened(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze")
    unit = (REPO / "heatup.service").read_text()
    assert "Type=notify" in unit and "WatchdogSec=" in unit and "StateDirectory=heatup" in unit
    local = tmp_path / "heatup.service"
    local.write_text(unit.replace("/opt/heatup/.venv/bin/heatup", str(HEATUP)))
    verify = subprocess.run([analyze, "verify", str(local)], capture_output=True, text=True)
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr
    security = subprocess.run(
        [analyze, "security", "--offline=true", str(local)], capture_output=True, text=True
    )
    exposure = re.search(r"Overall exposure level for heatup.service: ([0-9.]+)", security.stdout)
    assert exposure is not None, security.stdout[-500:]
    assert float(exposure.group(1)) <= 2.0
    assert sys.executable  # the unit runs the same installed entry point the tests use
