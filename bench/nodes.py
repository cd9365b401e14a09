"""Several nodes on one PostgreSQL database: 1, 2 and 3 ``heatup run`` processes (distinct node
names) against one sandbox, at time scale 0.

Two loads for each number of nodes, each on a fresh database:

- **saturated**: SESSIONS sessions every 10 s (by default 4,000: more than one node can
  serve), each node with at most 100 runs in flight: total actions/s of all nodes, dispatch
  lag p99, and PostgreSQL's CPU (its server and backends, from /proc) per action;
- **cluster**: the three-node acceptance test's load (300 sessions every 20 s, jitter 5 s,
  time scale 0.02): slots claimed per second and dispatch lag p50 and p99.

DESIGN: three nodes give at least 1.5x the actions/s of one. Run from a checkout:
``.venv/bin/python -m bench.nodes [--seconds 45] [--nodes 1,2,3]``.
"""

from __future__ import annotations

import argparse
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import (
    Database,
    Heatup,
    cpu_seconds,
    database,
    percentile,
    postgres_cpu_seconds,
    sandbox_for,
    workspace,
    write_results,
)
from bench.end_to_end import JOINED, lags

SATURATING_SESSIONS = 4000
CLUSTER_SESSIONS = 300
WARMUP_S = 15


def run_nodes(
    db: Database, gateway: str, folder: Path, count: int, env: dict[str, str], seconds: float
) -> dict[str, Any]:
    nodes = [Heatup(db.url, gateway, folder, env, node=f"node-{i + 1}") for i in range(count)]
    with ExitStack() as stack:
        for node in nodes:
            stack.callback(node.kill)
        for node in nodes:
            node.start()
        time.sleep(WARMUP_S)
        actions0 = int(db.scalar("SELECT count(*) FROM warmup_actions"))
        slots0 = int(db.scalar("SELECT count(*) FROM warmup_runs WHERE trigger = 'schedule'"))
        pg0, heatup0 = postgres_cpu_seconds(), sum(cpu_seconds(n.pid) for n in nodes)
        since, started = datetime.now(UTC), time.perf_counter()
        time.sleep(seconds)
        elapsed = time.perf_counter() - started
        until = datetime.now(UTC)
        actions = int(db.scalar("SELECT count(*) FROM warmup_actions")) - actions0
        slots = int(db.scalar("SELECT count(*) FROM warmup_runs WHERE trigger = 'schedule'"))
        pg = postgres_cpu_seconds() - pg0
        heatup = sum(cpu_seconds(n.pid) for n in nodes) - heatup0
        for node in nodes:
            assert node.stop() == 0
    delays = lags(db, since, until)
    return {
        "nodes": count,
        "actions_per_s": round(actions / elapsed, 1),
        "slots_claimed_per_s": round((slots - slots0) / elapsed, 1),
        "lag_p50_s": round(percentile(delays, 0.5), 3),
        "lag_p99_s": round(percentile(delays, 0.99), 3),
        "postgres_cpu_ms_per_action": round(1000 * pg / max(actions, 1), 3),
        "heatup_cpu_ms_per_action": round(1000 * heatup / max(actions, 1), 3),
    }


def saturated(count: int, seconds: float) -> dict[str, Any]:
    with workspace() as folder, database("postgresql", folder) as db:
        db.add_sessions(SATURATING_SESSIONS, "10s", 9, joined=JOINED)
        with sandbox_for(folder, SATURATING_SESSIONS, flood_joins=1_000_000) as gateway:
            env = {
                "HEATUP_EXECUTOR__TIME_SCALE": "0",
                "HEATUP_SCHEDULER__MAX_CONCURRENT_RUNS": "100",
            }
            return run_nodes(db, gateway, folder, count, env, seconds)


def cluster(count: int, seconds: float) -> dict[str, Any]:
    with workspace() as folder, database("postgresql", folder) as db:
        db.add_sessions(CLUSTER_SESSIONS, "20s", 5)
        with sandbox_for(folder, CLUSTER_SESSIONS) as gateway:
            env = {
                "HEATUP_EXECUTOR__TIME_SCALE": "0.02",
                "HEATUP_SCHEDULER__RECONCILE_S": "1",
            }
            return run_nodes(db, gateway, folder, count, env, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=45.0)
    parser.add_argument("--nodes", default="1,2,3")
    args = parser.parse_args()
    counts = [int(n) for n in args.nodes.split(",")]
    results: dict[str, Any] = {"saturated": [], "cluster": []}
    for count in counts:
        figures = saturated(count, args.seconds)
        print(f"saturated, {count} node(s): {figures}")
        results["saturated"].append(figures)
    for count in counts:
        figures = cluster(count, args.seconds)
        print(f"cluster load, {count} node(s): {figures}")
        results["cluster"].append(figures)
    rates = {f["nodes"]: f["actions_per_s"] for f in results["saturated"]}
    if 1 in rates and 3 in rates:
        results["three_over_one"] = round(rates[3] / rates[1], 2)
        print(f"3 nodes / 1 node: {results['three_over_one']}x the actions/s")
    write_results("nodes", results)


if __name__ == "__main__":
    main()
