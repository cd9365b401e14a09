"""The real ``heatup run`` in real time: across daylight-saving changes on a host whose clock
libfaketime sets (and speeds up), next to a node whose clock is five minutes off, and
restarted after a downtime. Every figure these tests measure is printed."""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import pytest

from heatup_daemon.db.leases import REAPED
from heatup_daemon.testing import sandbox_process
from tests.acceptance.conftest import HEATUP
from tests.acceptance.daemons import Daemon, NotifySocket, sqlite_with_sessions, wait_until
from tests.acceptance.postgres import fresh_postgres_database, postgres_with_sessions
from tests.judging import Row, assert_every_slot_once, assert_no_overlap, load_runs
from tests.tools import faketime

# Every fake second is 1/SPEED of a real one: two hours of a host's night pass in a minute.
SPEED = 120
# The daemon's clock is fake and fast; the sandbox's is real. Waits, in fake seconds, that
# stay long enough in real time.
FAKE_TIME_ENV = {
    "HEATUP_EXECUTOR__TIME_SCALE": "0",
    "HEATUP_SCHEDULER__RECONCILE_S": "10",
    "HEATUP_SCHEDULER__DISPATCH_INTERVAL_S": "1",
    "HEATUP_GATEWAY__READ_TIMEOUT_S": "300",
    "HEATUP_GATEWAY__RETRY_DEADLINE_S": "600",
    "HEATUP_SCHEDULER__STALE_RUN_S": "1200",
    "HEATUP_SERVICE__STOP_TIMEOUT_S": "600",
}


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    with sandbox_process() as url:
        yield url


@dataclass(frozen=True)
class Change:
    """A daylight-saving change and the slots the rule (README "Daylight saving") gives."""

    name: str
    zone: str
    at: datetime  # the instant the clocks change
    daily: str  # a daily cron at a local time inside the change
    hourly_slots: tuple[str, ...]  # "0 * * * *", UTC times: one elapsed hour apart
    daily_slots: tuple[str, ...]


CHANGES = (
    # 02:00 EDT -> 01:00 EST. 01:30 is repeated: the daily slot is its first copy only.
    Change("new-york-fall-back", "America/New_York", datetime(2024, 11, 3, 6, tzinfo=UTC),
           "30 1 * * *", ("05:00", "06:00", "07:00"), ("05:30",)),
    # 02:00 EST -> 03:00 EDT. 02:30 does not exist: the daily slot fires right after the gap.
    Change("new-york-spring-forward", "America/New_York", datetime(2024, 3, 10, 7, tzinfo=UTC),
           "30 2 * * *", ("06:00", "07:00", "08:00"), ("07:00",)),
    # 03:00 CEST -> 02:00 CET.
    Change("berlin-fall-back", "Europe/Berlin", datetime(2024, 10, 27, 1, tzinfo=UTC),
           "30 2 * * *", ("00:00", "01:00", "02:00"), ("00:30",)),
    # 03:00 AEDT -> 02:00 AEST, in April.
    Change("sydney-april", "Australia/Sydney", datetime(2025, 4, 5, 16, tzinfo=UTC),
           "30 2 * * *", ("15:00", "16:00", "17:00"), ("15:30",)),
)  # fmt: skip
# BEFORE leaves start-up (a few real seconds: several fake minutes) before the first slot.
BEFORE, AFTER = timedelta(minutes=80), timedelta(minutes=70)
# Runs last a fake minute or so here (each real call is SPEED times as long): an interval
# well above that, so that none is skipped for a run still in flight.
INTERVAL = timedelta(minutes=5)


def fake_clock(start: datetime) -> dict[str, str]:
    """A host whose clock reads ``start`` now and runs ``SPEED`` times as fast."""
    return faketime(f"@{start:%Y-%m-%d %H:%M:%S} x{SPEED}")


def registered(template: Path, folder: Path, change: Change) -> tuple[str, subprocess.Popen[bytes]]:
    """A copy of the migrated ``template`` in ``folder``, and the ``heatup sessions import``
    that registers the change's three sessions there (started, not awaited: the changes'
    imports run together)."""
    folder.mkdir()
    database = folder / "heatup.db"
    with closing(sqlite3.connect(template)) as source, closing(sqlite3.connect(database)) as copy:
        source.backup(copy)
    sessions = folder / "sessions.csv"
    sessions.write_text(
        "gateway_id,schedule,timezone\n"
        f"1,0 * * * *,{change.zone}\n2,{change.daily},{change.zone}\n3,5m,UTC\n"
    )
    url = f"sqlite:///{database}"
    importing = subprocess.Popen(
        [str(HEATUP), "sessions", "import", str(sessions)],
        env={**os.environ, "HEATUP_DATABASE__URL": url},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    return url, importing


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_the_daemon_keeps_time_across_daylight_saving_changes(tmp_path: Path, gateway: str) -> None:
    sqlite_with_sessions(tmp_path / "template.db", 0)  # migrated once, copied for each
    imports = {c.name: registered(tmp_path / "template.db", tmp_path / c.name, c) for c in CHANGES}
    for _, importing in imports.values():
        out, _ = importing.communicate(timeout=120)
        assert importing.returncode == 0, out.decode()
    daemons: dict[str, tuple[Change, str, Daemon]] = {}
    for change in CHANGES:
        folder, (url, _) = tmp_path / change.name, imports[change.name]
        clock = fake_clock(change.at - BEFORE)
        daemon = Daemon(url, gateway, folder, **FAKE_TIME_ENV, **clock).start()
        daemons[change.name] = (change, url, daemon)
    try:
        # All at once: each covers its change, BEFORE + AFTER of its own fake time.
        time.sleep((BEFORE + AFTER).total_seconds() / SPEED + 3)
        for name, (_, _, daemon) in daemons.items():
            assert daemon.process is not None
            assert daemon.process.poll() is None, (name, daemon.output()[-3000:])  # stayed up
            daemon.process.send_signal(signal.SIGTERM)  # all at once: fake time runs fast
        codes = {name: daemon.wait(60) for name, (_, _, daemon) in daemons.items()}
    finally:
        for _, _, daemon in daemons.values():
            daemon.kill()
    figures = {}
    for name, (change, url, daemon) in daemons.items():
        assert codes[name] == 0, daemon.output()[-3000:]
        errors = [line for line in daemon.output().splitlines() if _is_error(line)]
        assert errors == [], (name, errors[:3])
        window = (change.at - BEFORE, change.at + AFTER)
        rows = [r for r in load_runs(url) if window[0] <= (r.scheduled_for or r.due_at) < window[1]]
        hourly, daily = _slots(rows, 1), _slots(rows, 2)
        assert hourly == list(change.hourly_slots), (name, hourly)  # each cron slot once
        assert daily == list(change.daily_slots), (name, daily)
        interval = [r for r in rows if r.gateway_session_id == 3]
        assert_every_slot_once(interval, INTERVAL)
        starts = sorted(r.started_at for r in interval if r.status != "skipped")
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        # The first run soon after the daemon came up, on its own clock (start-up is a few
        # real seconds, several fake minutes, and longer on a loaded machine).
        up = max(first_logged(daemon.output()), change.at - BEFORE)
        assert starts[0] <= up + INTERVAL + timedelta(minutes=5), (name, up, starts[0])
        assert starts[-1] >= change.at + AFTER - timedelta(minutes=10), name
        assert max(gaps) < 2 * INTERVAL, (name, max(gaps))  # never stalled
        figures[name] = {
            "hourly": hourly,
            "daily": daily,
            "interval runs": len(starts),
            "longest gap between interval runs, s": max(gaps).total_seconds(),
        }
    print(json.dumps(figures, indent=1))


def first_logged(output: str) -> datetime:
    """The time of a daemon's first log line, on its own clock."""
    for line in output.splitlines():
        if line.startswith("{"):
            return datetime.fromisoformat(json.loads(line)["time"])
    raise AssertionError(f"the daemon logged nothing: {output[-2000:]}")


def _slots(rows: list[Row], gateway_id: int) -> list[str]:
    runs = [r for r in rows if r.gateway_session_id == gateway_id and r.status != "skipped"]
    assert all(r.status == "succeeded" for r in runs), runs
    return [f"{r.scheduled_for:%H:%M}" for r in sorted(runs, key=lambda r: r.id)]


def _is_error(line: str) -> bool:
    if "Traceback" in line:
        return True
    try:
        return json.loads(line).get("level") in ("error", "critical")
    except ValueError:
        return False


# --- a node whose clock is wrong ---------------------------------------------------------

SKEW_SESSIONS = 60
SKEW_PERIOD = timedelta(seconds=20)
SKEW_ENV = {
    "HEATUP_EXECUTOR__TIME_SCALE": "0.02",
    "HEATUP_SCHEDULER__STALE_RUN_S": "10",
    "HEATUP_SCHEDULER__HEARTBEAT_S": "2",
    "HEATUP_GATEWAY__READ_TIMEOUT_S": "1",
    "HEATUP_GATEWAY__RETRY_DEADLINE_S": "3",
    "HEATUP_SCHEDULER__RECONCILE_S": "1",
    "HEATUP_SCHEDULER__DISPATCH_INTERVAL_S": "0.5",
    "HEATUP_SERVICE__STOP_TIMEOUT_S": "5",
}


@pytest.fixture
def cluster_database() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


@pytest.mark.slow
@pytest.mark.parametrize("skew", ["+5m", "-5m"])
@pytest.mark.timeout(300)
def test_a_node_whose_clock_is_five_minutes_off(
    cluster_database: str, gateway: str, tmp_path: Path, skew: str
) -> None:
    url = cluster_database
    postgres_with_sessions(url, SKEW_SESSIONS, "20s", 5)
    right = Daemon(url, gateway, tmp_path, **SKEW_ENV).start("--node-name", "right")
    wrong = Daemon(url, gateway, tmp_path, **SKEW_ENV, **faketime(skew))
    wrong.start("--node-name", "wrong")
    try:
        for daemon in (right, wrong):
            wait_until(lambda d=daemon: _ready(d), timeout_s=30)  # type: ignore[misc]
        time.sleep(60)
        checks = httpx2.get(f"http://127.0.0.1:{wrong.port}/readyz", timeout=5).json()["checks"]
        offset = _gauge(wrong, "heatup_clock_offset_seconds")
        stopping_at = datetime.now(UTC)
        codes = [daemon.stop()[0] for daemon in (right, wrong)]
    finally:
        right.kill()
        wrong.kill()
    assert codes == [0, 0], (right.output()[-2000:], wrong.output()[-2000:])
    rows = load_runs(url)
    assert not [r for r in rows if r.status == "running"]
    # No node died: no run was taken for dead, none ended early before the stop.
    interrupted = [
        r
        for r in rows
        if r.status == "interrupted"
        and (r.error == REAPED or (r.finished_at and r.finished_at < stopping_at))
    ]
    assert interrupted == [], interrupted[:3]
    slots = assert_every_slot_once(rows, SKEW_PERIOD)
    assert_no_overlap(rows)
    late = [r for r in rows if r.status == "skipped" and "missed by" in (r.error or "")]
    assert late == [], late[:3]  # no slot taken for overdue
    by_node = Counter(r.node for r in rows if r.status != "skipped")
    assert by_node["right"] > 0 and by_node["wrong"] > 0, by_node  # both nodes run work
    expected = 300.0 if skew.startswith("+") else -300.0
    assert abs(offset - expected) < 5, offset
    assert "clock" in checks and "the database's" in checks["clock"], checks
    print(
        json.dumps(
            {
                "skew": skew,
                "slot rows": slots,
                "runs by node": dict(by_node),
                "runs interrupted": len(interrupted),
                "heatup_clock_offset_seconds of the node off": round(offset, 2),
                "its /readyz clock check": checks["clock"],
            },
            indent=1,
        )
    )


def _ready(daemon: Daemon) -> bool:
    assert daemon.process is not None and daemon.process.poll() is None, daemon.output()
    try:
        return httpx2.get(f"http://127.0.0.1:{daemon.port}/healthz", timeout=1).is_success
    except httpx2.HTTPError:
        return False


def _gauge(daemon: Daemon, name: str) -> float:
    text = httpx2.get(f"http://127.0.0.1:{daemon.port}/metrics", timeout=5).text
    line = next(line for line in text.splitlines() if line.startswith(name + " "))
    return float(line.split()[1])


# --- a restart after a downtime -------------------------------------------------------------

RESTART_SESSIONS = 200
RESTART_PERIOD_S = 20
BUCKET_S = 5


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_restart_catches_up_at_most_twice_as_fast_as_the_pool_runs(
    tmp_path: Path, gateway: str
) -> None:
    url = sqlite_with_sessions(
        tmp_path / "restart.db", RESTART_SESSIONS, f"{RESTART_PERIOD_S}s", 19
    )
    steady_per_s = RESTART_SESSIONS / RESTART_PERIOD_S
    env = {"HEATUP_EXECUTOR__TIME_SCALE": "0", "HEATUP_SCHEDULER__RECONCILE_S": "1"}
    first = Daemon(url, gateway, tmp_path, **env).start()
    time.sleep(30)
    assert first.stop()[0] == 0
    stopped = datetime.now(UTC)
    time.sleep(30)  # down: every session falls due meanwhile
    notify = NotifySocket(tmp_path / "notify.sock")
    second = Daemon(url, gateway, tmp_path, NOTIFY_SOCKET=str(notify.path), **env).start()
    try:
        notify.wait_for("READY=1", timeout_s=30)
        ready = datetime.now(UTC)
        time.sleep(62)
        assert second.stop()[0] == 0
    finally:
        second.kill()
        notify.close()
    rows = load_runs(url)
    before = [r for r in rows if r.status != "skipped" and r.started_at < stopped]
    measured_steady = len([r for r in before if r.started_at >= stopped - timedelta(seconds=20)])
    after = [
        (r.started_at - ready).total_seconds()
        for r in rows
        if r.status != "skipped" and ready <= r.started_at < ready + timedelta(seconds=60)
    ]
    buckets = Counter(int(seconds // BUCKET_S) for seconds in after)
    peak_per_s = max(buckets.values()) / BUCKET_S
    assert_every_slot_once(rows, timedelta(seconds=RESTART_PERIOD_S))
    late = [r for r in rows if r.status == "skipped" and "missed by" in (r.error or "")]
    assert late == []  # 30 s down is within the grace: every overdue slot still ran
    assert peak_per_s <= 2.5 * steady_per_s, (peak_per_s, dict(sorted(buckets.items())))
    print(
        json.dumps(
            {
                "pool's steady rate (sessions / period), runs/s": steady_per_s,
                "runs/s measured in the 20 s before the stop": measured_steady / 20,
                "runs started in the first minute after READY": len(after),
                f"peak runs/s in a {BUCKET_S} s window of that minute": peak_per_s,
                "peak against the steady rate": round(peak_per_s / steady_per_s, 2),
                f"runs per {BUCKET_S} s window": [buckets[i] for i in range(12)],
            },
            indent=1,
        )
    )
