"""The test command's workers keep a group together: tests/systemd's tests go on from where
the one before left the machine, and the container tests share their images, so each group
must run on one pytest-xdist worker, in order (``--dist loadgroup``, as tests/run runs it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

GROUPED = """
import os
import pytest

pytestmark = pytest.mark.xdist_group("machine")


def note(name):
    with open(os.environ["LOG"], "a") as log:
        log.write(f"{os.environ['PYTEST_XDIST_WORKER']} {name}\\n")


def test_a(): note("a")
def test_b(): note("b")
def test_c(): note("c")
def test_d(): note("d")
"""
# Ungrouped tests for the other worker to take meanwhile.
OTHERS = "".join(f"def test_{n}(): pass\n" for n in range(8))


def test_a_group_runs_on_one_worker_in_order(tmp_path: Path) -> None:
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    (tmp_path / "test_others.py").write_text(OTHERS)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    log = tmp_path / "log"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-q",
         "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "-c", str(tmp_path / "pytest.ini"),
         str(tmp_path)],
        capture_output=True, text=True, timeout=120, env={"LOG": str(log), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line.split() for line in log.read_text().splitlines()]
    assert len({worker for worker, _ in lines}) == 1, lines
    assert [name for _, name in lines] == ["a", "b", "c", "d"]
