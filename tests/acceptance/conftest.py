from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

HEATUP = Path(sys.executable).with_name("heatup")
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str


Heatup = Callable[..., Result]


def run_heatup(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Result:
    """Run the installed ``heatup`` entry point, as an operator would."""
    assert HEATUP.exists(), f"{HEATUP} is missing: install the package (pip install -e .)"
    completed = subprocess.run(
        [str(HEATUP), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=60,
        check=False,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


@pytest.fixture
def heatup(database_url: str, tmp_path: Path) -> Heatup:
    """``heatup`` on a fresh database (SQLite, and PostgreSQL when configured)."""

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        return run_heatup(
            *args, env={"HEATUP_DATABASE__URL": database_url, **(env or {})}, cwd=tmp_path
        )

    return run
