"""``heatup.service`` as it ships, under a real systemd: READY, STATUS, the dynamic user and
its sandbox, the credential, the watchdog and the restart, a clean stop, restarts during
claims, an upgrade, and the journal's priorities and fields.

The tests run in order on one machine and one daemon (``conftest.py``), each from where the
one before left it, as an operator's day goes: start, register sessions, watch, kill, stop,
restart, upgrade.
"""

from __future__ import annotations

import random
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import httpx2
import pytest

from heatup_daemon import __version__
from heatup_daemon.db.migrate import head_revision
from tests.judging import (
    assert_every_slot_once,
    assert_no_call_outside_a_run,
    assert_no_completed_call_missing,
    assert_no_overlap,
)
from tests.sandboxes import SandboxControl
from tests.systemd.conftest import TOKEN, Report
from tests.systemd.machine import Machine, now_us, source_copy, wait_for, wheels

# In order, on one xdist worker: each test goes on from where the one before left the
# machine. Slow: the machine is minutes to make, and its worker should start with it.
pytestmark = [pytest.mark.timeout(300), pytest.mark.xdist_group("systemd"), pytest.mark.slow]

SESSIONS: Final = range(1, 11)  # healthy in the sandbox's world
PERIOD: Final = timedelta(seconds=10)
REVOKED: Final = 9001  # the sandbox says its account is gone: a warning in the journal
# As the unit ships.
WATCHDOG_S: Final = 30
RESTART_S: Final = 5
TIMEOUT_STOP_S: Final = 45
MARGIN_S: Final = 5
DYNAMIC_UIDS: Final = range(61184, 65520)  # systemd's range for DynamicUser=


def running(machine: Machine) -> set[int]:
    return {row[0] for row in machine.sql("SELECT id FROM warmup_runs WHERE status = 'running'")}


def stamp(entry: dict[str, str]) -> float:
    """An entry's time, in seconds since the epoch."""
    return int(entry["__REALTIME_TIMESTAMP"]) / 1e6


def first(entries: list[dict[str, str]], text: str, after: float = 0) -> dict[str, str]:
    for entry in entries:
        if text in entry.get("MESSAGE", "") and stamp(entry) >= after:
            return entry
    raise AssertionError(f"no journal entry says {text!r}")


def heatup_entries(entries: list[dict[str, str]]) -> list[dict[str, str]]:
    """The entries heatup's own process wrote (not systemd's about the unit)."""
    return [e for e in entries if e.get("_SYSTEMD_UNIT") == "heatup.service"]


@pytest.mark.timeout(1800)  # the first test waits for the machine to be made
def test_start_returns_once_ready(machine: Machine, api_port: int, report: Report) -> None:
    since = now_us()
    started = time.monotonic()
    machine.systemctl("start", "heatup")  # Type=notify: returns once READY=1 is sent
    took_s = time.monotonic() - started
    unit = machine.show("ActiveState", "SubState", "StatusText")
    assert (unit["ActiveState"], unit["SubState"]) == ("active", "running"), unit
    assert unit["StatusText"], unit  # sent with READY=1
    # READY=1 comes after the API listens: it answers now, without a retry.
    assert httpx2.get(f"http://127.0.0.1:{api_port}/healthz", timeout=5).status_code == 200
    entries = machine.journal("-u", "heatup", since_us=since)
    starting = first(entries, "Starting heatup.service")
    listening = first(entries, "the API listens on")
    ready = first(entries, "Started heatup.service")
    assert stamp(listening) <= stamp(ready)
    assert machine.path("/var/lib/private/heatup/heatup.db").exists()  # ExecStartPre made it
    report(
        {
            "systemctl start, returned after s": round(took_s, 2),
            "start to READY (journal: Starting to Started) s": round(
                stamp(ready) - stamp(starting), 2
            ),
            "status at READY": unit["StatusText"],
        }
    )


def test_the_status_line_is_set_and_follows_the_pool(machine: Machine, report: Report) -> None:
    before = machine.show("StatusText")["StatusText"]
    assert "runs in flight" in before and not before.startswith(f"{len(SESSIONS) + 1} of"), before
    lines = [f"{gateway_id},10s,0" for gateway_id in SESSIONS] + [f"{REVOKED},30s,0"]
    machine.path("/root/sessions.csv").write_text(
        "gateway_id,schedule,jitter_seconds\n" + "\n".join(lines) + "\n"
    )
    machine.heatup("sessions", "import", "/root/sessions.csv")  # as an admin, the README's way
    total = len(SESSIONS) + 1

    def scheduled() -> str | None:
        status = machine.show("StatusText")["StatusText"]
        counted = re.match(r"(\d+) of (\d+) sessions scheduled, (\d+) runs in flight", status)
        # The revoked session needs attention after its first run: no slot of its own.
        if counted and int(counted[2]) == total and int(counted[1]) >= len(SESSIONS):
            return status if int(counted[3]) > 0 else None
        return None

    after = wait_for(scheduled, timeout_s=90, interval_s=1)
    report({"status before the sessions": before, "status after": after})


def test_it_runs_as_a_dynamic_user_that_cannot_write_the_system(machine: Machine) -> None:
    pid = machine.main_pid()
    status = dict(
        line.split(":", 1) for line in machine.proc(pid, "status").splitlines() if ":" in line
    )
    uid = int(status["Uid"].split()[0])
    assert uid in DYNAMIC_UIDS and all(int(u) == uid for u in status["Uid"].split()), status["Uid"]
    assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0, status
    assert status["NoNewPrivs"].strip() == "1"
    # What the daemon can write, tried in its own namespaces as its own user.
    probe = machine.run(
        "nsenter", "-t", str(pid), "-a", "-S", str(uid), "-G", str(uid), "sh", "-c",
        "for d in /etc /opt /opt/heatup/.venv /usr /var/lib/heatup; do"
        " touch $d/probe 2>/dev/null && echo $d writable && rm $d/probe"
        " || echo $d refused; done",
    ).stdout  # fmt: skip
    assert probe.split("\n")[:-1] == [
        "/etc refused",
        "/opt refused",
        "/opt/heatup/.venv refused",
        "/usr refused",
        "/var/lib/heatup writable",
    ], probe
    # Its database is in its StateDirectory, owned by it.
    database = machine.path("/var/lib/private/heatup/heatup.db")
    assert database.stat().st_uid == uid
    descriptors = machine.shell(f"ls -l /proc/{pid}/fd").stdout
    assert "/var/lib/private/heatup/heatup.db" in descriptors


def test_the_token_reaches_it_through_load_credential_only_and_runs_succeed(
    machine: Machine, gateway: SandboxControl
) -> None:
    pid = machine.main_pid()
    environ = machine.proc(pid, "environ").split("\0")
    assert "CREDENTIALS_DIRECTORY=/run/credentials/heatup.service" in environ
    assert not any(TOKEN in variable for variable in environ)
    for path in ("/etc/heatup/config.toml", "/etc/systemd/system/heatup.service",
                 "/etc/systemd/system/heatup.service.d/test.conf"):  # fmt: skip
        assert TOKEN not in machine.path(path).read_text()
    owner = machine.proc(pid, "status").split("Uid:")[1].split()[0]
    as_daemon = ["nsenter", "-t", str(pid), "-a", "-S", owner, "-G", owner]
    given = machine.run(*as_daemon, "cat", "/run/credentials/heatup.service/gateway.token").stdout
    assert given == TOKEN
    refused = machine.run(*as_daemon, "cat", "/etc/heatup/credentials/gateway.token", check=False)
    assert refused.returncode != 0 and "Permission denied" in refused.stderr
    # The gateway refuses any other token: these runs got it through the credential.
    wait_for(
        lambda: (
            machine.sql("SELECT count(*) FROM warmup_runs WHERE status = 'succeeded'")[0][0]
            >= len(SESSIONS)
        ),
        timeout_s=120,
        interval_s=1,
    )
    audit = gateway.audit()
    assert audit and not [entry for entry in audit if entry["outcome"] == "unauthorized"]
    assert TOKEN not in machine.run("journalctl", "--no-pager", "-o", "json").stdout


def test_the_journal_has_priorities_and_fields_an_operator_can_filter(
    machine: Machine, report: Report
) -> None:
    wait_for(
        lambda: machine.sql(
            "SELECT count(*) FROM sessions WHERE gateway_session_id = "
            f"{REVOKED} AND state = 'needs_attention'"
        )[0][0],
        timeout_s=60,
        interval_s=1,
    )
    everything = machine.journal("-u", "heatup")
    warnings = machine.journal("-u", "heatup", "-p", "warning")
    # -p warning shows exactly the warnings and worse, heatup's among them.
    worse = [e["__CURSOR"] for e in everything if int(e.get("PRIORITY", "6")) <= 4]
    assert [e["__CURSOR"] for e in warnings] == worse
    attention = first(heatup_entries(warnings), "the session needs attention")
    assert attention["PRIORITY"] == "4" and attention["HEATUP_SESSION"] == str(REVOKED)
    assert all(int(e["PRIORITY"]) <= 3 for e in machine.journal("-u", "heatup", "-p", "err"))
    # One session's story, and one run's.
    story = machine.journal("-u", "heatup", "HEATUP_SESSION=5")
    assert story and all(e["HEATUP_SESSION"] == "5" for e in story)
    run_id = machine.sql(
        "SELECT r.id FROM warmup_runs r JOIN sessions s ON s.id = r.session_id WHERE "
        "s.gateway_session_id = 5 AND r.status = 'succeeded' ORDER BY r.id LIMIT 1"
    )[0][0]
    run = machine.journal("-u", "heatup", f"HEATUP_RUN={run_id}")
    messages = [e["MESSAGE"] for e in run]
    assert messages[0].startswith(f"run {run_id} started (schedule)"), messages
    assert messages[-1].startswith(f"run {run_id} succeeded after"), messages
    assert all(e["HEATUP_RUN"] == str(run_id) and e["HEATUP_SESSION"] == "5" for e in run)
    assert run[-1]["HEATUP_STATUS"] == "succeeded" and run[-1]["LOGGER"] == "heatup_daemon.runs"
    # MESSAGE is the sentence; heatup's own entries come through the native protocol.
    own = heatup_entries(everything)
    daemon = [e for e in own if e.get("_COMM") == "heatup" and e["_TRANSPORT"] == "journal"]
    assert daemon and not any(e["MESSAGE"].startswith("{") for e in own)
    stdout = [e["MESSAGE"] for e in own if e["_TRANSPORT"] == "stdout"]
    assert stdout == [f"{head_revision()} (head)"] * len(stdout)  # ExecStartPre's one line
    report(
        {
            "entries of heatup": len(own),
            "shown by -p warning": len(warnings),
            "entries with HEATUP_SESSION=5": len(story),
            f"entries with HEATUP_RUN={run_id}": len(run),
        }
    )


def test_a_stopped_loop_is_killed_by_the_watchdog_and_its_runs_end_at_once(
    machine: Machine, report: Report
) -> None:
    wait_for(lambda: running(machine), timeout_s=30)
    pid, restarts = machine.main_pid(), int(machine.show("NRestarts")["NRestarts"])
    since = now_us()
    machine.shell(f"kill -STOP {pid}")  # its event loop stops: no more WATCHDOG=1
    stopped_at = time.time()
    cut = running(machine)  # the frozen process's runs in flight
    assert cut

    def replaced() -> bool:
        unit = machine.show("MainPID", "ActiveState")
        return unit["MainPID"] not in ("0", str(pid)) and unit["ActiveState"] == "active"

    wait_for(replaced, timeout_s=WATCHDOG_S + RESTART_S + 30, interval_s=0.5)
    entries = machine.journal("-u", "heatup", since_us=since)
    killed = first(entries, "Watchdog timeout")
    first(entries, "Failed with result 'watchdog'")
    ready = first(entries, "Started heatup.service", after=stamp(killed))
    assert stamp(killed) - stopped_at <= WATCHDOG_S + MARGIN_S
    assert int(machine.show("NRestarts")["NRestarts"]) == restarts + 1  # Restart=on-failure
    wait_for(lambda: not cut & running(machine), timeout_s=30)
    ended = [row for row in machine.runs() if row.id in cut]
    assert all(row.status == "interrupted" and "successor" in (row.error or "") for row in ended)
    ended_after_s = max(r.finished_at.timestamp() for r in ended if r.finished_at) - stamp(killed)
    assert ended_after_s < RESTART_S + 20  # not the 120 s lease
    successor = first(heatup_entries(entries), "stopped on this host without ending its runs")
    assert successor["PRIORITY"] == "4"
    report(
        {
            "SIGSTOP to the watchdog's kill s": round(stamp(killed) - stopped_at, 1),
            "kill to READY again s": round(stamp(ready) - stamp(killed), 1),
            "runs in flight at the kill": len(cut),
            "kill to their end (interrupted) s": round(ended_after_s, 1),
        }
    )


def test_a_stop_with_runs_in_flight_is_clean(machine: Machine, report: Report) -> None:
    wait_for(lambda: running(machine), timeout_s=30)
    in_flight = len(running(machine))
    since = now_us()
    started = time.monotonic()
    done = machine.systemctl("stop", "heatup", check=False)
    took_s = time.monotonic() - started
    unit = machine.show("Result", "ExecMainStatus", "ActiveState")
    assert done.returncode == 0, done.stderr
    assert unit == {"Result": "success", "ExecMainStatus": "0", "ActiveState": "inactive"}, unit
    entries = machine.journal("-u", "heatup", since_us=since)
    first(entries, "heatup stopped")
    first(entries, "Deactivated successfully")  # exit 0, not a signal or a kill
    assert not [e for e in entries if "Main process exited" in e.get("MESSAGE", "")]
    assert took_s < TIMEOUT_STOP_S
    assert running(machine) == set()
    machine.systemctl("start", "heatup")
    report({"runs in flight at the stop": in_flight, "systemctl stop took s": round(took_s, 2)})


def test_restarts_during_claims_lose_no_slot_and_run_none_twice(
    machine: Machine, gateway: SandboxControl, report: Report
) -> None:
    rng = random.Random(20261207)
    took = []
    for _ in range(3):
        # The sessions fall due together: restart as the next claims are made.
        (due,) = machine.sql("SELECT min(next_run_at) FROM sessions WHERE state = 'active'")[0]
        wait_s = (
            datetime.fromisoformat(due).replace(tzinfo=UTC) - datetime.now(UTC)
        ).total_seconds()
        time.sleep(max(0.0, wait_s + rng.uniform(-0.05, 0.1)))
        started = time.monotonic()
        machine.systemctl("restart", "heatup")
        took.append(round(time.monotonic() - started, 2))
    time.sleep(2 * PERIOD.total_seconds())  # the schedule goes on
    restarted_at = datetime.now(UTC) - 2 * PERIOD
    machine.systemctl("stop", "heatup")  # every run ends, to be judged
    rows = [row for row in machine.runs() if row.gateway_session_id in SESSIONS]
    assert not [row for row in rows if row.status == "running"]
    slots = assert_every_slot_once(rows, PERIOD)
    assert_no_overlap(rows)
    audit = [entry for entry in gateway.audit() if entry["session"] in SESSIONS]
    assert_no_call_outside_a_run(rows, audit)
    actions = machine.sql(
        "SELECT r.gateway_session_id, a.kind, a.outcome, a.error_code FROM warmup_actions a "
        "JOIN warmup_runs r ON r.id = a.run_id"
    )
    calls = assert_no_completed_call_missing([a for a in actions if a[0] in SESSIONS], audit)
    later = {row.gateway_session_id for row in rows if row.started_at > restarted_at}
    assert later == set(SESSIONS)  # every session ran again after the restarts
    machine.systemctl("start", "heatup")
    report({"systemctl restart took s": took, "slot rows": slots, **calls})


@pytest.fixture(scope="module")
def newer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return newer_build(tmp_path_factory.mktemp("newer"))


def test_an_upgrade_migrates_in_exec_start_pre_and_comes_back(
    machine: Machine, newer: Path, api_port: int, report: Report
) -> None:
    machine.install(newer, upgrade=True)  # while the old build runs
    since = now_us()
    started = time.monotonic()
    machine.systemctl("restart", "heatup")
    took_s = time.monotonic() - started
    revision = newer_revision()
    assert machine.heatup("db", "current").strip() == f"{revision} (head)"
    entries = machine.journal("-u", "heatup", since_us=since)
    migrated = first(entries, f"{revision} (head)")  # ExecStartPre's heatup db upgrade
    ready = first(entries, "Started heatup.service")
    assert stamp(migrated) <= stamp(ready)
    assert machine.sql("SELECT name FROM sqlite_master WHERE name = 'upgrade_probe'")
    info = httpx2.get(f"http://127.0.0.1:{api_port}/", timeout=5).json()
    assert info["version"] == UPGRADED_VERSION
    upgraded_at = datetime.now(UTC)
    wait_for(
        lambda: [
            r for r in machine.runs() if r.status == "succeeded" and r.started_at > upgraded_at
        ],
        timeout_s=60,
        interval_s=1,
    )
    report({"systemctl restart onto the newer build s": round(took_s, 2), "revision": revision})


UPGRADED_VERSION: Final = f"{__version__}+upgrade"
MIGRATION: Final = '''"""A table of the upgrade test's own (tests/systemd).

Revision ID: {revision}
Revises: {down}
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("upgrade_probe", sa.Column("id", sa.Integer, primary_key=True))


def downgrade() -> None:
    op.drop_table("upgrade_probe")
'''


def newer_revision() -> str:
    return f"{int(head_revision()) + 1:04d}"


def newer_build(folder: Path) -> Path:
    """This checkout with one migration more and a higher version, as a wheel."""
    source = source_copy(folder / "source")
    down, revision = head_revision(), newer_revision()
    (source / "migrations" / "versions" / f"{revision}_upgrade_probe.py").write_text(
        MIGRATION.format(revision=revision, down=down)
    )
    init = source / "heatup_daemon" / "__init__.py"
    text = init.read_text()
    old = f'__version__ = "{__version__}"'
    assert old in text
    init.write_text(text.replace(old, f'__version__ = "{UPGRADED_VERSION}"'))
    return wheels(source, folder / "wheels", dependencies=False)


def test_a_rollback_the_schema_cannot_follow_fails_saying_why_at_priority_err(
    machine: Machine, build: Path, newer: Path, report: Report
) -> None:
    machine.install(build, upgrade=True)  # the older build back, the schema left ahead
    since = now_us()
    assert machine.systemctl("restart", "heatup", check=False).returncode != 0
    errors = machine.journal("-u", "heatup", "-p", "err", since_us=since)
    refusal = first(heatup_entries(errors), "heatup: error:")  # ExecStartPre's one line
    assert refusal["PRIORITY"] == "3" and newer_revision() in refusal["MESSAGE"]
    # Restart=on-failure tries again every RestartSec: the newer build back, it comes back.
    machine.install(newer, upgrade=True)
    wait_for(lambda: machine.show("ActiveState")["ActiveState"] == "active", timeout_s=60)
    report({"ExecStartPre's error in journalctl -p err": refusal["MESSAGE"]})
