"""The simulation's options: how many seeds, which one to replay, with its trace."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

DEFAULT_SEEDS = 1000
# On a worker of tests/run, one process: the other workers' daemons need the other core.
DEFAULT_PROCESSES = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sim", "the deterministic simulation (tests/sim)")
    group.addoption(
        "--sim-seeds",
        type=int,
        default=DEFAULT_SEEDS,
        help=f"how many seeds to simulate, from --sim-first on (default {DEFAULT_SEEDS})",
    )
    group.addoption("--sim-first", type=int, default=0, help="the first seed (default 0)")
    group.addoption(
        "--sim-seed",
        type=int,
        default=None,
        help="replay this one seed, in this process (the other tests of tests/sim are skipped)",
    )
    group.addoption(
        "--sim-trace",
        action="store_true",
        help="print the replayed seed's trace (every port call, request, event, log line)",
    )
    group.addoption(
        "--sim-processes",
        type=int,
        default=DEFAULT_PROCESSES,
        help=f"processes to spread the seeds over (default {DEFAULT_PROCESSES})",
    )


@dataclass(frozen=True)
class SimOptions:
    seeds: int
    first: int
    seed: int | None
    trace: bool
    processes: int


@pytest.fixture
def sim(request: pytest.FixtureRequest) -> SimOptions:
    option = request.config.getoption
    return SimOptions(
        seeds=option("--sim-seeds"),
        first=option("--sim-first"),
        seed=option("--sim-seed"),
        trace=option("--sim-trace"),
        processes=option("--sim-processes"),
    )


@pytest.fixture
def whole_survey(sim: SimOptions) -> SimOptions:
    """The options of a test that is not the replay of one seed (skipped during one)."""
    if sim.seed is not None:
        pytest.skip("replaying one seed (--sim-seed)")
    return sim
