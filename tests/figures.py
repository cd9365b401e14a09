"""Figures a scenario measures: each test hands them to ``report``; the process that reports
the run (pytest itself, or pytest-xdist's controller when workers run the tests) prints them
at its end and writes them to ``tests/artifacts/faults.json``. They travel in the test's
report, so that the figures of every worker end in one file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import pytest

ARTIFACTS: Final = Path(__file__).resolve().parent / "artifacts"
# The key of a test report's user property that carries the figures, as JSON.
PROPERTY: Final = "heatup-figures"

Report = Callable[[dict[str, Any]], None]


def reporter(request: pytest.FixtureRequest) -> Report:
    """The ``report`` fixture's function for the test of ``request``."""

    def record(figures: dict[str, Any]) -> None:
        print(f"\n{request.node.name}: {json.dumps(figures, default=str)}")
        request.node.user_properties.append((PROPERTY, json.dumps(figures, default=str)))

    return record


class Figures:
    """Collects the figures from the reports of the tests' calls (a pytest plugin)."""

    def __init__(self) -> None:
        self.results: dict[str, Any] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for key, value in report.user_properties:
            if key == PROPERTY:
                self.results[report.nodeid.rsplit("::", 1)[-1]] = json.loads(str(value))
                ARTIFACTS.mkdir(exist_ok=True)
                (ARTIFACTS / "faults.json").write_text(json.dumps(self.results, indent=2))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.results:
            return
        terminalreporter.section("fault scenarios: figures")
        for name, figures in self.results.items():
            terminalreporter.write_line(name)
            for key, value in figures.items():
                terminalreporter.write_line(f"    {key}: {value}")
