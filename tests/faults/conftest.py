"""What every fault scenario shares: figures to report (``tests/figures.py``), real processes,
and a PostgreSQL cluster of the test's own that it may stop."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from heatup_daemon.testing import free_port
from tests.figures import Report, reporter
from tests.tools import tool


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Report:
    """Record a scenario's figures: printed at the end of the run, and written to
    ``tests/artifacts/faults.json``."""
    return reporter(request)


class PrivatePostgres:
    """A PostgreSQL cluster of this test's own on a free port (never the machine's shared
    server), which the test may stop and start again."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="heatup-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._as_owner: list[str] = []
        if os.getuid() == 0:  # PostgreSQL refuses to run as root
            shutil.chown(self.root, "postgres", "postgres")
            self._as_owner = [tool("runuser"), "-u", "postgres", "--"]
        self._run(
            tool("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"
        )
        self.start()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        subprocess.run([*self._as_owner, *argv], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=200"
        )
        self._run(
            tool("pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._run(tool("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def close(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass  # stopped already
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres()
    try:
        yield cluster
    finally:
        cluster.close()
