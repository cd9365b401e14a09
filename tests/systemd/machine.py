"""A Debian machine booted with systemd in ``systemd-nspawn``, with heatup installed as the
README's "Run it as a service" installs it, for ``tests/systemd``.

Docker cannot grant what systemd's sandboxing asks for (``DynamicUser=``, ``PrivateUsers=``,
``LoadCredential=``); nspawn can. The root is made with ``mmdebstrap`` and heatup with the
wheels of its dependencies is built on the host (its pip reaches the package index), so the
machine installs it offline. The machine shares the host's network: the unit reaches a
gateway on the host's loopback, and the test reaches the unit's API there. Commands run
inside through ``nsenter`` into the machine's PID 1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

from tests.judging import Row
from tests.tools import tool

T = TypeVar("T")

REPO: Final = Path(__file__).resolve().parents[2]
PACKAGES: Final = "systemd,systemd-sysv,dbus,python3,python3-venv,ca-certificates"
# Inside the machine: where the wheels land, heatup's virtual environment, its database.
WHEELS: Final = "/var/tmp/heatup-wheels"
VENV: Final = "/opt/heatup/.venv"
DATABASE: Final = "/var/lib/private/heatup/heatup.db"  # StateDirectory= with DynamicUser=
# The README's admin commands on the host.
ADMIN_ENV: Final = (
    "HEATUP_CONFIG=/etc/heatup/config.toml",
    "HEATUP_DATABASE__URL=sqlite:////var/lib/heatup/heatup.db",
)
BARE_ENV: Final = ("PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8")
RUN_COLUMNS: Final = (
    "id, gateway_session_id, status, trigger, scheduled_for, next_slot_at, due_at, "
    "started_at, finished_at, node, error"
)


def make_root(folder: Path) -> Path:
    """A minimal Debian bookworm with systemd and Python, made from nothing."""
    root = folder / "root"
    subprocess.run(
        [tool("mmdebstrap"), "--quiet", "--variant=minbase", f"--include={PACKAGES}",
         "bookworm", str(root)],
        check=True, capture_output=True, timeout=900,
    )  # fmt: skip
    return root


def source_copy(folder: Path) -> Path:
    """The files heatup's wheel is built from, copied from the checkout (never its build/ or
    caches, which would leak old modules into the wheel)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("heatup_daemon", "migrations"):
        shutil.copytree(REPO / name, folder / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, folder / name)
    return folder


def wheels(source: Path, into: Path, *, dependencies: bool = True) -> Path:
    """heatup's wheel built from ``source`` (and its dependencies' wheels) in ``into``;
    the path of heatup's."""
    into.mkdir(parents=True, exist_ok=True)
    before = set(into.glob("heatup-*.whl"))
    argv = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(into)]
    if not dependencies:
        argv.append("--no-deps")
    subprocess.run([*argv, str(source)], check=True, capture_output=True, timeout=900)
    built = sorted(set(into.glob("heatup-*.whl")) - before) or sorted(into.glob("heatup-*.whl"))
    return built[-1]


class Machine:
    """The booted machine: commands inside, its units, its journal, its files."""

    def __init__(self, root: Path, log: Path) -> None:
        self.root = root
        self._log = log.open("wb")
        self._nspawn = subprocess.Popen(
            [tool("systemd-nspawn"), "--quiet", "--register=no", "--keep-unit",
             "-D", str(root), "-b", "--console=pipe"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            self.pid1 = wait_for(self._init_process, timeout_s=60)
            wait_for(self._booted, timeout_s=120, interval_s=0.5)
        except BaseException:
            self.power_off()
            raise

    def _booted(self) -> bool:
        """Whether the boot has ended (systemd may not answer at all in its first moments)."""
        state = self.run("systemctl", "is-system-running", "--wait", check=False, timeout_s=120)
        return state.stdout.strip() in ("running", "degraded")

    def _init_process(self) -> int | None:
        assert self._nspawn.poll() is None, "systemd-nspawn exited: see its log"
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == self._nspawn.pid:
                    return int(entry.name)
        return None

    def run(
        self, *argv: str, check: bool = True, timeout_s: float = 120, env: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess[str]:
        """``argv`` inside the machine as root, in a bare environment (plus ``env``)."""
        done = subprocess.run(
            [tool("nsenter"), "-t", str(self.pid1), "-a", "env", "-i", *BARE_ENV, *env, *argv],
            capture_output=True, text=True, timeout=timeout_s, check=False,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")
        return done

    def shell(self, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("sh", "-c", script, check=check)

    def path(self, inside: str) -> Path:
        """A file of the machine as the host sees it."""
        return self.root / inside.lstrip("/")

    def install(self, wheel: Path, *, upgrade: bool = False) -> None:
        """``pip install`` heatup into its virtual environment, offline, as an operator
        installs a build (the wheels are copied in first)."""
        folder = self.path(WHEELS)
        folder.mkdir(parents=True, exist_ok=True)
        for built in wheel.parent.glob("*.whl"):
            shutil.copy2(built, folder / built.name)
        if not self.path(f"{VENV}/bin/python").exists():
            self.run("python3", "-m", "venv", VENV)
        pip = [f"{VENV}/bin/pip", "install", "--quiet", "--no-index", "--find-links", WHEELS]
        if upgrade:
            pip += ["--upgrade", "--no-deps", "--force-reinstall"]
        self.run(*pip, f"{WHEELS}/{wheel.name}", timeout_s=600)

    def heatup(self, *args: str) -> str:
        """An admin's ``heatup`` command as root, configured as the README says."""
        return self.run(f"{VENV}/bin/heatup", *args, env=ADMIN_ENV).stdout

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", *args, check=check)

    def show(self, *properties: str) -> dict[str, str]:
        """``systemctl show`` of heatup's unit."""
        out = self.systemctl("show", "heatup", *(f"--property={p}" for p in properties)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def main_pid(self) -> int:
        return int(self.show("MainPID")["MainPID"])

    def proc(self, pid: int, name: str) -> str:
        """``/proc/PID/NAME`` of a process inside the machine."""
        return self.run("cat", f"/proc/{pid}/{name}").stdout

    def journal(self, *args: str, since_us: int = 0) -> list[dict[str, Any]]:
        """The journal's entries for ``journalctl ARGS`` as JSON (each field a string;
        binary ones decoded), those at or after ``since_us`` (µs since the epoch)."""
        out = self.run("journalctl", "--no-pager", "-o", "json", *args).stdout
        entries = [_strings(json.loads(line)) for line in out.splitlines() if line]
        return [e for e in entries if int(e["__REALTIME_TIMESTAMP"]) >= since_us]

    def runs(self) -> list[Row]:
        """Every run row, read from the machine's database file (read-only: the database
        is the dynamic user's)."""
        uri = f"file:{self.path(DATABASE)}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=10)) as db:
            rows = db.execute(f"SELECT {RUN_COLUMNS} FROM warmup_runs ORDER BY id").fetchall()
        times = range(4, 9)  # scheduled_for .. finished_at
        return [Row(*(_utc(v) if i in times else v for i, v in enumerate(row))) for row in rows]

    def sql(self, statement: str) -> list[tuple[Any, ...]]:
        uri = f"file:{self.path(DATABASE)}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=10)) as db:
            return db.execute(statement).fetchall()

    def power_off(self) -> None:
        if self._nspawn.poll() is None:
            self._nspawn.send_signal(signal.SIGTERM)  # nspawn asks systemd to power off
            try:
                self._nspawn.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._nspawn.kill()
                self._nspawn.wait()
        self._log.close()


@contextmanager
def booted(root: Path, log: Path) -> Iterator[Machine]:
    machine = Machine(root, log)
    try:
        yield machine
    finally:
        machine.power_off()


def now_us() -> int:
    return time.time_ns() // 1000


def wait_for(check: Callable[[], T | None], timeout_s: float, interval_s: float = 0.2) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f} s: {check}")
        time.sleep(interval_s)


def _utc(value: Any) -> Any:
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value


def _strings(entry: dict[str, Any]) -> dict[str, str]:
    """Each field as text: journalctl writes one that is not plain text as a list of its
    bytes, and a field given twice as a list of its values (the last is kept)."""
    return {key: _text(value) for key, value in entry.items()}


def _text(value: Any) -> str:
    if isinstance(value, list):
        if all(isinstance(item, int) for item in value):
            return bytes(value).decode("utf-8", "replace")
        return _text(value[-1]) if value else ""
    return str(value)


def is_root() -> bool:
    return os.geteuid() == 0
