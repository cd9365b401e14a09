"""What every fault scenario shares: figures to report, the short or long variant, real
processes, and a PostgreSQL cluster of the test's own that it may stop."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from heatup_daemon.testing import free_port
from tests.tools import tool

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
Report = Callable[[dict[str, Any]], None]


@pytest.fixture
def long_faults(request: pytest.FixtureRequest) -> bool:
    """The long variants (``pytest --long-faults``) run for minutes; CI runs the short ones."""
    return bool(request.config.getoption("--long-faults"))


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Report:
    """Record a scenario's figures: printed at the end of the run, and written to
    ``tests/artifacts/faults.json``."""

    def record(figures: dict[str, Any]) -> None:
        print(f"\n{request.node.name}: {json.dumps(figures, default=str)}")
        results = request.config.stash.setdefault(FIGURES, {})
        results[request.node.name] = figures
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "faults.json").write_text(json.dumps(results, indent=2, default=str))

    return record


FIGURES = pytest.StashKey[dict[str, dict[str, Any]]]()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    results = config.stash.get(FIGURES, {})
    if not results:
        return
    terminalreporter.section("fault scenarios: figures")
    for name, figures in results.items():
        terminalreporter.write_line(name)
        for key, value in figures.items():
            terminalreporter.write_line(f"    {key}: {value}")


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
