"""Running ``heatup run`` as operators do, for the acceptance tests: the daemon process, the
SQL clients admins use, systemd's notify socket."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx2
from sqlalchemy.engine import make_url

from heatup_daemon.testing import free_port
from tests.acceptance.conftest import HEATUP
from tests.tools import tool

T = TypeVar("T")

FAST = {
    "HEATUP_SCHEDULER__RECONCILE_S": "0.5",
    "HEATUP_SCHEDULER__DISPATCH_INTERVAL_S": "0.2",
    "HEATUP_SCHEDULER__ROLL_UP_S": "0.5",
    "HEATUP_EXECUTOR__TIME_SCALE": "0",
    "HEATUP_SERVICE__STOP_TIMEOUT_S": "3",
}


class SQL:
    """The database through its plain command-line client, as an admin would use it."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        if parsed.drivername.startswith("sqlite"):
            # .timeout: wait for the daemon's write lock instead of failing with SQLITE_BUSY.
            self.command = [tool("sqlite3"), "-cmd", ".timeout 10000", str(parsed.database)]
            self.true = "1"
        else:
            plain = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
            self.command = [tool("psql"), plain, "-At", "-v", "ON_ERROR_STOP=1", "-c"]
            self.true = "t"

    def __call__(self, statement: str) -> list[list[str]]:
        out = subprocess.run(
            [*self.command, statement], capture_output=True, text=True, check=True, timeout=30
        ).stdout
        return [line.split("|") for line in out.splitlines() if line]


def register(env: dict[str, str], gateway_id: int, *extra: str) -> None:
    """``heatup sessions add`` as an admin types it: a daily schedule spread over the day
    (``extra`` adds or overrides options)."""
    subprocess.run(
        [str(HEATUP), "sessions", "add", "--gateway-id", str(gateway_id),
         "--schedule", "1d", "--jitter", "80000", *extra],
        env=env, check=True, capture_output=True,
    )  # fmt: skip


def sqlite_with_sessions(
    database: Path, sessions: int, schedule: str = "10s", jitter_s: int = 2, first_id: int = 1
) -> str:
    """A SQLite database migrated by ``heatup db upgrade``, holding sessions ``first_id`` and
    up on ``schedule``, inserted in plain SQL as an admin would; returns its URL."""
    url = f"sqlite:///{database}"
    subprocess.run(
        [str(HEATUP), "db", "upgrade"],
        env={**os.environ, "HEATUP_DATABASE__URL": url},
        check=True,
        capture_output=True,
    )
    with sqlite3.connect(database) as db:
        db.executemany(
            "INSERT INTO sessions (gateway_session_id, schedule, jitter_seconds, timezone, "
            "enabled, state) VALUES (?, ?, ?, 'UTC', 1, 'active')",
            [(uid, schedule, jitter_s) for uid in range(first_id, first_id + sessions)],
        )
    return url


class Daemon:
    """``heatup run`` as a process of its own (``env`` adds to its environment)."""

    def __init__(self, database_url: str, gateway_url: str, tmp_path: Path, **env: str) -> None:
        self.log = tmp_path / f"daemon-{time.monotonic_ns()}.log"
        self.port = free_port()
        self.env = {
            **os.environ,
            **FAST,
            "HEATUP_DATABASE__URL": database_url,
            "HEATUP_GATEWAY__BASE_URL": gateway_url,
            "HEATUP_API__PORT": str(self.port),  # every daemon serves its API
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Where its API listens."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, *args: str) -> Daemon:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [str(HEATUP), "run", *args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.log.parent,
            )
        return self

    def stop(self, timeout_s: float = 15) -> tuple[int, float]:
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout_s)
        return code, time.monotonic() - started

    def wait(self, timeout_s: float) -> int:
        """Until the process exits (a signal was sent); its exit code."""
        assert self.process is not None
        return self.process.wait(timeout=timeout_s)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def answers(url: str) -> bool:
    """Whether ``url`` answers 200 within a second."""
    try:
        return httpx2.get(url, timeout=1).status_code == 200
    except httpx2.HTTPError:
        return False


class NotifySocket:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[str] = []

    def wait_for(self, field: str, timeout_s: float = 20) -> str:
        """The first message with the line ``field`` (e.g. ``READY=1``)."""
        return self._wait(lambda message: field in message.splitlines(), field, timeout_s)

    def wait_for_text(self, text: str, timeout_s: float = 20) -> str:
        """The first message containing ``text`` anywhere (e.g. in ``STATUS=``)."""
        return self._wait(lambda message: text in message, text, timeout_s)

    def _wait(self, matches: Callable[[str], bool], what: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for message in self.messages:
                if matches(message):
                    return message
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                break
        raise AssertionError(f"no {what} from the daemon; got {self.messages}")

    def close(self) -> None:
        self.sock.close()


def wait_until(check: Callable[[], T], timeout_s: float = 20, interval_s: float = 0.2) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval_s)
