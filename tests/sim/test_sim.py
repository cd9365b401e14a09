"""The simulation: many seeds, each a scenario of several heatup nodes under faults, held to
the invariants (``invariants``); the seeds that found heatup's known defects, kept; and the
harness's own promises (one seed, one trace; virtual time; every fault kind; invariants that
can fail)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

from heatup_daemon.run.runner import InFlight
from tests.sim.cluster import simulate
from tests.sim.conftest import SimOptions
from tests.sim.faults import Fault
from tests.sim.scenario import DURATION_S
from tests.sim.survey import Outcome, outcomes, replay_command, run_seed, survey

ROOT: Final = Path(__file__).resolve().parents[2]
ARTIFACTS: Final = ROOT / "tests" / "artifacts"

# The seeds that found each known defect on the code before its fix (issue 30), and the
# invariant each broke: each must pass once its defect is fixed. The first three found
# items 1-3 before their fixes; the others found what the fixed code still does.
REGRESSIONS: Final = [
    pytest.param(1, "one_task_per_run", id="item-1-a-run-launched-twice"),
    pytest.param(0, "tokens_add_up", id="item-2-the-token-ledger-below-use"),
    pytest.param(4, "calls_within_lease", id="item-3-a-call-outlasts-its-lease"),
    # Found on the fixed code, then fixed.
    pytest.param(14, "nodes_exit_cleanly", id="a-stop-waits-for-a-dispatcher-that-waits-for-it"),
    pytest.param(3, "no_unexpected_errors", id="a-shielded-read-fails-unretrieved-after-a-stop"),
    pytest.param(17, "no_unexpected_errors", id="a-stop-cancels-a-housekeeping-pass-logged-error"),
    pytest.param(359, "join_places_add_up", id="a-removed-sessions-run-reserves-joins"),
    pytest.param(795, "no_running_after_clean_stop", id="a-run-whose-end-a-stop-cannot-write"),
    pytest.param(496, "no_unexpected_errors", id="an-end-a-stop-gave-up-left-unretrieved"),
]


def describe(outcome: Outcome) -> str:
    first = outcome.violations[0] if outcome.violations else ("harness_error", 0.0, "")
    name, at_s, detail = first
    detail = outcome.error or detail
    return (
        f"seed {outcome.seed}: {', '.join(outcome.invariants)} (first: {name} at {at_s:.1f} s: "
        f"{detail[:200]})\n    replay: {replay_command(outcome.seed)}"
    )


@pytest.mark.timeout(0)
def test_seeds(sim: SimOptions, capsys: pytest.CaptureFixture[str]) -> None:
    """Every seed keeps every invariant (``--sim-seeds N`` from ``--sim-first``; one seed,
    replayed in this process, with ``--sim-seed``)."""
    if sim.seed is not None:
        replay(sim.seed, sim.trace)
        return
    seeds = range(sim.first, sim.first + sim.seeds)
    figures = survey(seeds, sim.processes)
    with capsys.disabled():
        print(
            f"\n{figures.seeds} seeds, {figures.simulated_s / 3600:.1f} simulated hours, "
            f"{figures.runs} runs, {figures.requests} gateway requests, "
            f"{sum(figures.faults.values())} faults; {figures.cpu_s / max(figures.seeds, 1):.3f} "
            f"CPU s a seed, {figures.wall_s:.1f} s wall"
        )
    failures = "\n".join(describe(outcome) for outcome in figures.failures)
    assert not figures.failures, f"{len(figures.failures)} seeds failed:\n{failures}"


def replay(seed: int, show_trace: bool) -> None:
    result = simulate(seed, verbose=show_trace)
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"sim-seed-{seed}.trace"
    path.write_text("\n".join(result.trace.lines()) + "\n")
    if show_trace:
        for line in result.trace.lines():
            print(line)
    print(f"seed {seed}: trace digest {result.digest}, {result.trace.count} lines in {path}")
    found = "\n".join(str(violation) for violation in result.violations)
    assert not result.violations, f"seed {seed} broke:\n{found}\ntrace: {path}"


@pytest.mark.parametrize(("seed", "invariant"), REGRESSIONS)
def test_known_defect_stays_fixed(whole_survey: SimOptions, seed: int, invariant: str) -> None:
    result = simulate(seed)
    broken = [str(v) for v in result.violations if v.invariant == invariant]
    assert not broken, f"{replay_command(seed)}\n" + "\n".join(broken)


# --- the harness's own promises ------------------------------------------------------------


def test_one_seed_gives_one_trace(whole_survey: SimOptions) -> None:
    first, again = simulate(11), simulate(11)
    assert first.trace.count == again.trace.count
    assert first.digest == again.digest


def test_one_seed_gives_one_trace_in_another_process(whole_survey: SimOptions) -> None:
    """Nothing in the trace hangs on the process: string hashing, object addresses."""
    here = simulate(11).digest
    code = "from tests.sim.cluster import simulate; print(simulate(11).digest)"
    environment = {**os.environ, "PYTHONHASHSEED": "4242"}
    there = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.strip()
    assert there == here


def test_one_seed_gives_one_outcome_in_the_workers(whole_survey: SimOptions) -> None:
    """Seeds run in forked workers, after other seeds, as they run alone."""
    seeds = [11, 3, 12, 4]
    alone = {seed: run_seed(seed) for seed in seeds}
    for outcome in outcomes(seeds, processes=2):
        assert (outcome.lines, outcome.violations) == (
            alone[outcome.seed].lines,
            alone[outcome.seed].violations,
        )


def test_virtual_time_runs_half_an_hour_in_a_second(whole_survey: SimOptions) -> None:
    result = simulate(3)
    assert result.simulated_s >= DURATION_S
    assert result.cpu_s < 3.0, f"{result.simulated_s:.0f} simulated s took {result.cpu_s:.2f} CPU s"


def test_every_fault_kind_is_injected(whole_survey: SimOptions) -> None:
    injected: set[str] = set()
    for seed in range(12):
        injected.update(simulate(seed).faults)
    assert injected >= {str(kind) for kind in Fault}


def test_a_run_launched_twice_is_found(
    whole_survey: SimOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The invariants can fail: a planted double launch breaks ``one_task_per_run``."""
    launch = InFlight.launch

    def twice(self: InFlight, run, on_plan=None):  # type: ignore[no-untyped-def]
        launch(self, run)
        return launch(self, run, on_plan)

    monkeypatch.setattr(InFlight, "launch", twice)
    found = {v.invariant for v in simulate(11).violations}
    assert "one_task_per_run" in found
