"""Memory per run in flight: RUNS concurrent runs (10,000 by default) parked in long actions.

Registers RUNS sessions, disabled, in SQLite; starts the real ``heatup run`` (time scale 1,
reads and idles of an hour) and takes its RSS once it has settled with nothing running (the
base). Then enables every session in one SQL statement, as an admin would: each is due at
once, and every run starts, plans, makes its first action and parks in a pause, a read or
an idle. Once all RUNS are in flight (``running`` rows) and RSS has settled, the growth over
the base, per run, is the figure. DESIGN: under 50 KB per run (10,000 runs under 500 MB).

Run from a checkout: ``.venv/bin/python -m bench.in_flight [RUNS]``.
"""

from __future__ import annotations

import sys
import time

from bench.common import Heatup, database, rss_mb, sandbox_for, workspace, write_results

PARKED_S = "3600"


def settled_rss(pid: int, seconds: float = 10.0) -> float:
    """RSS once it stops growing: the highest of the last readings."""
    readings = [rss_mb(pid)]
    while True:
        time.sleep(seconds / 5)
        readings.append(rss_mb(pid))
        recent = readings[-5:]
        if len(readings) >= 5 and max(recent) - min(recent) < 2:
            return max(recent)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    with workspace() as folder, database("sqlite", folder) as db:
        db.add_sessions(runs, "1d", 0, enabled=False)
        with sandbox_for(folder, runs, flood_joins=1_000_000) as gateway:
            daemon = Heatup(
                db.url,
                gateway,
                folder,
                {
                    "HEATUP_EXECUTOR__TIME_SCALE": "1",
                    "HEATUP_SCHEDULER__MAX_CONCURRENT_RUNS": str(runs * 2),
                    "HEATUP_GATEWAY__MAX_CONNECTIONS": "200",
                    "HEATUP_PLANNER__READ_MIN_S": PARKED_S,
                    "HEATUP_PLANNER__READ_MAX_S": PARKED_S,
                    "HEATUP_PLANNER__IDLE_MIN_S": PARKED_S,
                    "HEATUP_PLANNER__IDLE_MAX_S": PARKED_S,
                },
            )
            try:
                daemon.start()
                base = settled_rss(daemon.pid)
                print(f"base RSS, {runs} sessions registered, none running: {base:.1f} MB")
                db.sql("UPDATE sessions SET enabled = 1")
                started = time.perf_counter()
                # Every session has started its run (a plan of short actions only may have
                # ended already).
                while int(db.scalar("SELECT count(*) FROM warmup_runs")) < runs:
                    if time.perf_counter() - started > 600:
                        raise RuntimeError("the runs did not all start within 600 s")
                    time.sleep(2)
                print(f"every run started after {time.perf_counter() - started:.0f} s")
                loaded = settled_rss(daemon.pid, 20.0)
                in_flight = int(
                    db.scalar("SELECT count(*) FROM warmup_runs WHERE status = 'running'")
                )
                actions = int(db.scalar("SELECT count(*) FROM warmup_actions"))
                assert daemon.stop() == 0
            finally:
                daemon.kill()
    per_run_kb = (loaded - base) * 1024 / max(in_flight, 1)
    print(f"RSS with {in_flight} runs in flight: {loaded:.1f} MB")
    print(f"over the base: {loaded - base:.1f} MB, {per_run_kb:.1f} KB per run")
    write_results(
        "in_flight",
        {
            "runs_in_flight": in_flight,
            "actions_made_before_parking": actions,
            "rss_base_mb": round(base, 1),
            "rss_in_flight_mb": round(loaded, 1),
            "rss_over_base_mb": round(loaded - base, 1),
            "kb_per_run": round(per_run_kb, 1),
        },
    )


if __name__ == "__main__":
    main()
