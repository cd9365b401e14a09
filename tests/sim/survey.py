"""Many seeds at once, spread over processes: what the test and ``bench.simulation`` run.

Each seed's ``Outcome`` is a small picklable summary of its ``cluster.Result``; a failing
seed is replayed, exactly and with its trace, by ``replay_command(seed)``.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Final

from tests.sim.cluster import simulate

REPLAY: Final = ".venv/bin/python -m pytest tests/sim --sim-seed {seed} --sim-trace"
CHUNK: Final = 4


def replay_command(seed: int) -> str:
    """The one command that replays ``seed`` exactly, printing its trace."""
    return REPLAY.format(seed=seed)


@dataclass(frozen=True)
class Outcome:
    seed: int
    violations: tuple[tuple[str, float, str], ...]  # (invariant, at_s, detail)
    simulated_s: float
    events: int
    faults: dict[str, int]
    requests: int
    operations: int
    llm_calls: int
    runs: int
    actions: int
    callbacks: int
    lines: int  # of its trace: two runs of a seed that differ anywhere differ here too
    cpu_s: float
    error: str | None = None  # the harness itself failed

    @property
    def failed(self) -> bool:
        return bool(self.violations) or self.error is not None

    @property
    def invariants(self) -> list[str]:
        names = [name for name, _, _ in self.violations]
        if self.error is not None:
            names.append("harness_error")
        return sorted(set(names))


def run_seed(seed: int) -> Outcome:
    try:
        result = simulate(seed)
    except Exception as exc:  # reported as the seed's failure, with the replay command
        return Outcome(seed, (), 0.0, 0, {}, 0, 0, 0, 0, 0, 0, 0, 0.0, error=repr(exc))
    return Outcome(
        seed=seed,
        violations=tuple((v.invariant, v.at_s, v.detail) for v in result.violations),
        simulated_s=result.simulated_s,
        events=result.events,
        faults={str(kind): count for kind, count in result.faults.items()},
        requests=result.requests,
        operations=result.operations,
        llm_calls=result.llm_calls,
        runs=result.runs,
        actions=result.actions,
        callbacks=result.callbacks,
        lines=result.trace.count,
        cpu_s=result.cpu_s,
    )


def outcomes(seeds: Iterable[int], processes: int) -> Iterator[Outcome]:
    """Each seed's outcome, in seed order, over ``processes`` forked workers."""
    seeds = list(seeds)
    if processes <= 1 or len(seeds) < 2:
        yield from map(run_seed, seeds)
        return
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        yield from pool.map(run_seed, seeds, chunksize=CHUNK)


@dataclass
class Survey:
    """The figures of many seeds."""

    seeds: int = 0
    failures: list[Outcome] = field(default_factory=list)
    simulated_s: float = 0.0
    events: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    operations: int = 0
    runs: int = 0
    actions: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    by_invariant: Counter[str] = field(default_factory=Counter)
    first_failing: dict[str, int] = field(default_factory=dict)

    def add(self, outcome: Outcome) -> None:
        self.seeds += 1
        self.simulated_s += outcome.simulated_s
        self.events += outcome.events
        self.faults.update(outcome.faults)
        self.requests += outcome.requests
        self.operations += outcome.operations
        self.runs += outcome.runs
        self.actions += outcome.actions
        self.cpu_s += outcome.cpu_s
        if outcome.failed:
            self.failures.append(outcome)
            for name in outcome.invariants:
                self.by_invariant[name] += 1
                self.first_failing.setdefault(name, outcome.seed)


def survey(
    seeds: Iterable[int], processes: int, each: Callable[[Outcome], None] = lambda o: None
) -> Survey:
    started = time.perf_counter()
    figures = Survey()
    for outcome in outcomes(seeds, processes):
        figures.add(outcome)
        each(outcome)
    figures.wall_s = time.perf_counter() - started
    return figures
