"""Stopping with 200 runs in flight: SIGTERM, and SIGTERM twice. Exit 0, no ``running`` row
left, ``STOPPING=1`` sent; the second signal cancels the runs at once instead of waiting for
their current action."""

from __future__ import annotations

import itertools
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from heatup_daemon.testing import sandbox_process
from tests.acceptance.daemons import Daemon, NotifySocket, sqlite_with_sessions, wait_until
from tests.figures import Report

RUNS = 200
STOP_TIMEOUT_S = 5.0


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    with sandbox_process() as url:
        yield url


def running(database: Path) -> int:
    with sqlite3.connect(database, timeout=10) as db:
        row = db.execute("SELECT count(*) FROM warmup_runs WHERE status = 'running'").fetchone()
    return int(row[0])


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("signals", [1, 2])
def test_stop_with_200_runs_in_flight(
    signals: int, gateway: str, tmp_path: Path, report: Report
) -> None:
    database = tmp_path / "stop.db"
    url = sqlite_with_sessions(database, RUNS + 10, "1d", 0)
    notify = NotifySocket(tmp_path / "notify.sock")
    daemon = Daemon(
        url,
        gateway,
        tmp_path,
        NOTIFY_SOCKET=str(notify.path),
        HEATUP_EXECUTOR__TIME_SCALE="1",
        # Pauses between actions are short, and a stop ends a run in a pause at once: at the
        # signal, the runs are inside their long reads and idles, which a stop lets finish.
        HEATUP_EXECUTOR__DELAY_MIN_S="0",
        HEATUP_EXECUTOR__DELAY_MAX_S="0.05",
        HEATUP_EXECUTOR__LONG_PAUSE_CHANCE="0",
        HEATUP_PLANNER__READ_MIN_S="300",
        HEATUP_PLANNER__READ_MAX_S="400",
        HEATUP_PLANNER__IDLE_MIN_S="300",
        HEATUP_PLANNER__IDLE_MAX_S="400",
        HEATUP_SCHEDULER__MAX_CONCURRENT_RUNS="500",
        HEATUP_SERVICE__STOP_TIMEOUT_S=str(STOP_TIMEOUT_S),
    ).start()
    try:
        notify.wait_for("READY=1", timeout_s=30)
        in_flight = wait_until(lambda: (n := running(database)) >= RUNS and n, timeout_s=60)
        time.sleep(1)  # each is past its quick first actions
        assert daemon.process is not None
        started = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        if signals == 2:
            time.sleep(0.3)
            daemon.process.send_signal(signal.SIGTERM)
        code = daemon.process.wait(timeout=60)
        seconds = time.monotonic() - started
        stopping = notify.wait_for("STOPPING=1", timeout_s=2)
    finally:
        daemon.kill()
        notify.close()
    left = running(database)
    with sqlite3.connect(database) as db:
        interrupted = db.execute(
            "SELECT count(*) FROM warmup_runs WHERE status = 'interrupted'"
        ).fetchone()[0]
    report(
        {
            "signals": signals,
            "runs in flight at the signal": in_flight,
            "exit code": code,
            "seconds to exit": round(seconds, 2),
            "running rows left": left,
            "runs interrupted": interrupted,
        }
    )
    assert code == 0, daemon.output()[-2000:]
    assert left == 0 and interrupted >= RUNS
    assert "STOPPING=1" in stopping
    if signals == 1:
        assert STOP_TIMEOUT_S - 1 < seconds < STOP_TIMEOUT_S + 10  # waited for the actions
    else:
        assert seconds < STOP_TIMEOUT_S  # the second signal did not wait
    assert "Traceback" not in daemon.output()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_every_signal_sequence_exits_0(gateway: str, tmp_path: Path, report: Report) -> None:
    """A second SIGTERM or SIGINT at any moment of a quick stop: while heatup stops, as it
    has just stopped, as the process exits."""
    url = sqlite_with_sessions(tmp_path / "signals.db", 5, "1d", 0)
    codes = {}
    for first, second, delay_s in itertools.product(
        (signal.SIGTERM, signal.SIGINT), (signal.SIGTERM, signal.SIGINT), (0.0, 0.2, 0.5, 1.0)
    ):
        notify = NotifySocket(tmp_path / f"notify-{first}-{second}-{delay_s}.sock")
        daemon = Daemon(url, gateway, tmp_path, NOTIFY_SOCKET=str(notify.path)).start()
        try:
            notify.wait_for("READY=1", timeout_s=30)
            assert daemon.process is not None
            daemon.process.send_signal(first)
            time.sleep(delay_s)
            if daemon.process.poll() is None:
                daemon.process.send_signal(second)
            codes[f"{first.name}, {delay_s} s, {second.name}"] = daemon.process.wait(timeout=30)
        finally:
            daemon.kill()
            notify.close()
    report({"exit codes by sequence": codes})
    assert set(codes.values()) == {0}, codes
    assert running(tmp_path / "signals.db") == 0
