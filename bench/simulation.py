"""The simulation over many seeds (``tests/sim``): how many fail, and on what; how much it
simulated and injected; what a seed costs.

Prints the seeds, each failing seed with its invariants and the one command that replays it,
the simulated hours, the events, the faults injected by kind, the gateway requests, the CPU
seconds a seed and the wall time, and writes them to ``bench/results/simulation.json``.

Run from a checkout: ``.venv/bin/python -m bench.simulation --seeds 100000 --processes 2``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bench.common import write_results
from tests.sim.survey import Outcome, Survey, replay_command, survey

PROGRESS_EVERY = 1000
SHOWN_FAILURES = 200


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.simulation", description=__doc__)
    parser.add_argument("--seeds", type=int, default=1000, help="how many seeds (default 1000)")
    parser.add_argument("--first", type=int, default=0, help="the first seed (default 0)")
    parser.add_argument("--processes", type=int, default=2, help="worker processes (default 2)")
    args = parser.parse_args(argv)

    done = 0

    def each(outcome: Outcome) -> None:
        nonlocal done
        done += 1
        if outcome.failed:
            print(f"seed {outcome.seed}: {', '.join(outcome.invariants)}", flush=True)
        if done % PROGRESS_EVERY == 0:
            print(f"... {done} seeds", file=sys.stderr, flush=True)

    seeds = range(args.first, args.first + args.seeds)
    figures = survey(seeds, args.processes, each)
    report(figures, args.processes)
    return 0


def report(figures: Survey, processes: int) -> dict[str, Any]:
    seeds = max(figures.seeds, 1)
    document: dict[str, Any] = {
        "seeds": figures.seeds,
        "processes": processes,
        "failed_seeds": len(figures.failures),
        "failing_seeds_by_invariant": dict(figures.by_invariant.most_common()),
        "first_failing_seed_by_invariant": figures.first_failing,
        "simulated_hours": round(figures.simulated_s / 3600, 1),
        "events": figures.events,
        "faults_injected": sum(figures.faults.values()),
        "faults_by_kind": dict(figures.faults.most_common()),
        "runs": figures.runs,
        "actions": figures.actions,
        "gateway_requests": figures.requests,
        "gateway_calls": figures.operations,
        "cpu_s_per_seed": round(figures.cpu_s / seeds, 3),
        "wall_s": round(figures.wall_s, 1),
        "failures": [
            {
                "seed": outcome.seed,
                "invariants": outcome.invariants,
                "first": outcome.violations[0][2] if outcome.violations else outcome.error,
                "replay": replay_command(outcome.seed),
            }
            for outcome in figures.failures[:SHOWN_FAILURES]
        ],
    }
    print(
        f"\n{figures.seeds} seeds over {processes} processes: {len(figures.failures)} failed\n"
        f"simulated {document['simulated_hours']} hours, {figures.events} events, "
        f"{document['faults_injected']} faults injected, {figures.runs} runs, "
        f"{figures.requests} gateway requests ({figures.operations} calls)\n"
        f"CPU {document['cpu_s_per_seed']} s a seed, wall {document['wall_s']} s"
    )
    for kind, count in figures.faults.most_common():
        print(f"  {kind:>10}: {count}")
    for name, count in figures.by_invariant.most_common():
        print(f"  {name}: {count} seeds, first {figures.first_failing[name]}")
    for outcome in figures.failures[:SHOWN_FAILURES]:
        print(f"  seed {outcome.seed}: {', '.join(outcome.invariants)}")
        print(f"    {replay_command(outcome.seed)}")
    write_results("simulation", document)
    return document


if __name__ == "__main__":
    raise SystemExit(main())
