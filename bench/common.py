"""What the benchmarks share: a database with N sessions, a sandbox whose world knows them, the
real ``heatup run`` as a process, /proc readings, and results written as JSON.

Each benchmark prints its figures and writes them to ``bench/results/NAME.json`` with the
machine, the date and the commit, so that two versions can be compared.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from uuid import uuid4

import asyncpg
import httpx2
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from heatup_daemon.db.sessions import admin_key
from heatup_daemon.pool import DEFAULT_POOL
from heatup_daemon.testing import free_port, heatup_server, sandbox_process

__all__ = [
    "HEATUP",
    "Database",
    "Heatup",
    "free_port",
    "percentile",
    "sandbox_process",
    "write_results",
]

HEATUP: Final = Path(sys.executable).with_name("heatup")
ROOT: Final = Path(__file__).resolve().parents[1]
RESULTS: Final = ROOT / "bench" / "results"
POSTGRES_SERVER: Final = os.environ.get(
    "HEATUP_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
# Accounts old enough for the join ramp's last stage: plans join as a settled account's do.
OLD_ACCOUNT: Final = "2020-01-01 00:00:00.000000"


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process (and of its children it waited for)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(value) for value in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def postgres_cpu_seconds() -> float:
    """CPU of every PostgreSQL process (the server and its backends) on this machine."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                total += cpu_seconds(int(entry.name))
        except OSError:
            continue  # it exited meanwhile
    return total


def server_pid(url: str) -> int:
    """The pid of the ``heatup`` server (sandbox, LLM stub) started on ``url``'s port."""
    port = url.rsplit(":", 1)[1].split("/")[0]
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # not a process, or it exited meanwhile
        if any(arg.endswith(b"heatup") for arg in argv[:2]) and b"--port" in argv:
            if argv[argv.index(b"--port") + 1].decode() == port:
                return int(entry.name)
    raise RuntimeError(f"no heatup server runs on {url}")


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "os": platform.platform(),
    }


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    # Results and the plot drawn from them are outputs, not changes to what was measured.
    outputs = (":!bench/results", ":!docs/scale.png", ":!docs/production_day.png")
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", *outputs)
    return head + ("+changes" if changed else "")


def write_results(name: str, figures: dict[str, Any]) -> Path:
    """Print ``figures`` and write them, with the machine, date and commit, as JSON."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit(),
        "machine": machine(),
        "figures": figures,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwritten to {path.relative_to(ROOT)}")
    return path


def world_file(folder: Path, sessions: int, flood_joins: int | None = None) -> Path:
    """A sandbox world with healthy sessions 1..``sessions`` and the shipped channel pool
    (``flood_joins``: joins a session may make a minute before a flood wait)."""
    lines = [f"[limits]\nflood_joins = {flood_joins}\n"] if flood_joins else []
    lines += ["[[sessions]]", f'ids = "1-{max(sessions, 1)}"', ""]
    for username, *_ in DEFAULT_POOL:
        lines += ["[[channels]]", f'username = "{username}"', 'kind = "public"', "messages = 30"]
    path = folder / "world.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Database:
    """A fresh database (SQLite file or PostgreSQL database) migrated by ``heatup db
    upgrade``, with sessions inserted in bulk as an admin would."""

    kind: str  # "sqlite" or "postgresql"
    folder: Path
    url: str = ""
    _pg_name: str | None = None

    def __post_init__(self) -> None:
        if self.kind == "sqlite":
            self.url = f"sqlite:///{self.folder / 'heatup.db'}"
        else:
            self._pg_name = f"heatup_bench_{uuid4().hex[:10]}"
            asyncio.run(_postgres(f"CREATE DATABASE {self._pg_name}"))
            base = POSTGRES_SERVER.rsplit("/", 1)[0]
            self.url = f"{base}/{self._pg_name}"
        subprocess.run(
            [str(HEATUP), "db", "upgrade"],
            env={**os.environ, "HEATUP_DATABASE__URL": self.url},
            check=True,
            capture_output=True,
        )

    def add_sessions(
        self, count: int, schedule: str, jitter_s: int, *, enabled: bool = True, joined: int = 0
    ) -> None:
        """``count`` sessions of old accounts; with ``joined``, the shipped pool too, and each
        session already a member of ``joined`` of its channels (a pool settled in: its plans
        read channels as well as join them)."""
        flag = "1" if enabled else "0"
        if self.kind == "sqlite":
            with sqlite3.connect(self.folder / "heatup.db") as db:
                db.execute(
                    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?) "
                    "INSERT INTO sessions (gateway_session_id, schedule, jitter_seconds, "
                    "timezone, enabled, state, account_created_at) "
                    f"SELECT x, ?, ?, 'UTC', {flag}, 'active', '{OLD_ACCOUNT}' FROM n",
                    (count, schedule, jitter_s),
                )
        else:
            self.sql(
                "INSERT INTO sessions (gateway_session_id, schedule, jitter_seconds, timezone, "
                f"enabled, state, account_created_at) SELECT g, '{schedule}', {jitter_s}, "
                f"'UTC', {'true' if enabled else 'false'}, 'active', '{OLD_ACCOUNT}' "
                f"FROM generate_series(1, {count}) g"
            )
        if joined:
            self._join(joined)

    def settle(self, period_s: int, first_in_s: int = 60) -> None:
        """Put every session where a pool in its steady state has it: scheduled as of its
        last reconcile, its next run due at a uniform moment over the next ``period_s``
        (from ``first_in_s`` on), its nominal slot up to a period before that. A pool newly
        registered has nothing due for a period; a settled one has a steady rate from the
        start."""
        dialect: Dialect = (
            sqlite.dialect() if self.kind == "sqlite" else postgresql.dialect()  # type: ignore[no-untyped-call]
        )
        key = admin_key().compile(dialect=dialect, compile_kwargs={"literal_binds": True})
        if self.kind == "sqlite":
            due = (
                f"datetime('now', '+' || ({first_in_s} + abs(random()) % {period_s}) "
                "|| ' seconds') || '.000000'"
            )
            nominal = (
                f"datetime(next_run_at, '-' || (abs(random()) % {period_s - 1}) "
                "|| ' seconds') || '.000000'"
            )
        else:
            due = f"now() + ({first_in_s} + random() * {period_s}) * interval '1 second'"
            nominal = f"next_run_at - random() * {period_s - 1} * interval '1 second'"
        self.sql(f"UPDATE sessions SET applied_key = {key}, next_run_at = {due}")
        self.sql(f"UPDATE sessions SET next_nominal_at = {nominal}")

    def _join(self, per_session: int) -> None:
        pool = len(DEFAULT_POOL)
        assert per_session <= pool
        # A fresh database numbers them 1 to ``pool``, in this order.
        values = ", ".join(f"('{username}', 'bench')" for username, *_ in DEFAULT_POOL)
        self.sql(f"INSERT INTO channels (username, category) VALUES {values}")
        offsets = (
            f"(WITH RECURSIVE j(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM j WHERE k < "
            f"{per_session - 1}) SELECT k FROM j)"
            if self.kind == "sqlite"
            else f"(SELECT generate_series(0, {per_session - 1}) AS k)"
        )
        joined_at = f"'{OLD_ACCOUNT}'" + ("" if self.kind == "sqlite" else "::timestamptz")
        self.sql(
            "INSERT INTO session_channels (session_id, channel_id, joined_at) "
            f"SELECT s.id, ((s.id + j.k) % {pool}) + 1, {joined_at} FROM sessions s, {offsets} j"
        )

    def sql(self, statement: str) -> list[tuple[Any, ...]]:
        if self.kind == "sqlite":
            with sqlite3.connect(self.folder / "heatup.db", timeout=30) as db:
                return list(db.execute(statement))
        return asyncio.run(_postgres(statement, self.url))

    def scalar(self, statement: str) -> Any:
        rows = self.sql(statement)
        return rows[0][0] if rows else None

    def rows_written(self) -> int | None:
        """Rows inserted, updated and deleted so far (PostgreSQL's statistics; ``None`` on
        SQLite, which keeps no such count)."""
        if self._pg_name is None:
            return None
        return int(
            self.scalar(
                "SELECT tup_inserted + tup_updated + tup_deleted FROM pg_stat_database "
                f"WHERE datname = '{self._pg_name}'"
            )
        )

    def drop(self) -> None:
        if self._pg_name is not None:
            asyncio.run(_postgres(f"DROP DATABASE IF EXISTS {self._pg_name} WITH (FORCE)"))


async def _postgres(statement: str, url: str = POSTGRES_SERVER) -> list[tuple[Any, ...]]:
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return [tuple(row) for row in await connection.fetch(statement)]
    finally:
        await connection.close()


@contextmanager
def database(kind: str, folder: Path) -> Iterator[Database]:
    made = Database(kind, folder)
    try:
        yield made
    finally:
        made.drop()


@dataclass
class Heatup:
    """The real ``heatup run``, started with ``env`` on top of the benchmark's settings."""

    url: str
    gateway: str
    folder: Path
    env: dict[str, str] = field(default_factory=dict)
    node: str = "bench"
    process: subprocess.Popen[bytes] | None = None
    port: int = 0

    def start(self) -> float:
        """Start it and wait for systemd's READY=1; the seconds that took."""
        self.port = free_port()
        notify_path = self.folder / f"notify-{uuid4().hex[:8]}.sock"
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(notify_path))
        env = {
            **os.environ,
            "HEATUP_DATABASE__URL": self.url,
            "HEATUP_GATEWAY__BASE_URL": self.gateway,
            "HEATUP_API__PORT": str(self.port),
            "HEATUP_SERVICE__LOG_LEVEL": "WARNING",
            "NOTIFY_SOCKET": str(notify_path),
            **self.env,
        }
        started = time.perf_counter()
        log = (self.folder / f"{self.node}.log").open("ab")
        self.process = subprocess.Popen(
            [str(HEATUP), "run", "--node-name", self.node],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            notify.settimeout(0.5)
            while time.perf_counter() - started < 900:
                try:
                    if b"READY=1" in notify.recv(65536):
                        return time.perf_counter() - started
                except TimeoutError:
                    pass
                if self.process.poll() is not None:
                    code, tail = self.process.returncode, self.output()[-2000:]
                    raise RuntimeError(f"heatup exited with {code}:\n{tail}")
            raise RuntimeError("heatup was not ready within 900 s")
        finally:
            notify.close()
            notify_path.unlink(missing_ok=True)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self, *, check: bool = True) -> int:
        """SIGTERM, and wait for its exit: its code (with ``check``, a failed stop raises,
        with heatup's last lines)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=120)
        if check and code != 0:
            raise RuntimeError(f"heatup exited with {code}:\n{self.output()[-3000:]}")
        return code

    def output(self) -> str:
        return (self.folder / f"{self.node}.log").read_text(errors="replace")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def ready(self) -> bool:
        try:
            return httpx2.get(f"http://127.0.0.1:{self.port}/readyz", timeout=5).is_success
        except httpx2.HTTPError:
            return False


@contextmanager
def workspace() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="heatup-bench-") as folder:
        yield Path(folder)


@contextmanager
def sandbox_for(
    folder: Path, sessions: int, *args: str, flood_joins: int | None = None
) -> Iterator[str]:
    """The sandbox gateway, its world holding sessions 1..``sessions`` (building a world of
    millions takes the sandbox some seconds)."""
    world = world_file(folder, sessions, flood_joins)
    ready_s = 15.0 + sessions / 50_000
    with sandbox_process("--world", str(world), *args, ready_timeout_s=ready_s) as url:
        yield url


@contextmanager
def llm_stub(*args: str) -> Iterator[str]:
    with heatup_server("llm-stub", *args) as url:
        yield url
