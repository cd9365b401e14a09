"""How heatup grows with the number of sessions: 1,000, 10,000, 100,000 and 1,000,000
registered by bulk insert (SQLite, the default database), at one fixed load.

For each size, the schedule is stretched so that about RATE runs a second fall due
(period = size / RATE, jitter a period): the load is the same, only the registry grows.
Measured:

- start to READY=1 (systemd's notify socket), and to every session scheduled (the first
  reconcile of every row);
- RSS at ready and after SECONDS of running;
- heatup's CPU per action over those SECONDS;
- a plain restart (SIGTERM, start again, nothing pending): start to READY=1 again.

Each figure's log-log slope against the size says how it grows (0: flat, 1: linear).
DESIGN: 100,000 sessions ready in under 10 s with RSS under 400 MB; 1,000,000 ready in under
60 s; the restart's time does not grow with the size. ``python -m bench.plot`` draws the
curves from the JSON this writes. Run from a checkout:
``.venv/bin/python -m bench.scale [--sizes 1000,10000,100000,1000000] [--seconds 60]``.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

from bench.common import (
    Heatup,
    cpu_seconds,
    database,
    rss_mb,
    sandbox_for,
    workspace,
    write_results,
)

RATE = 20  # runs due a second at every size: about 100 actions/s, within one node's reach


def one_size(size: int, seconds: float) -> dict[str, Any]:
    period = max(10, size // RATE)
    with workspace() as folder, database("sqlite", folder) as db:
        inserted = time.perf_counter()
        db.add_sessions(size, f"{period}s", period - 1)
        insert_s = time.perf_counter() - inserted
        with sandbox_for(folder, size, flood_joins=1_000_000) as gateway:
            env = {
                "HEATUP_EXECUTOR__TIME_SCALE": "0",
            }
            daemon = Heatup(db.url, gateway, folder, env)
            try:
                ready_s = daemon.start()
                rss_ready = rss_mb(daemon.pid)
                started = time.perf_counter() - ready_s
                while int(db.scalar("SELECT count(next_run_at) FROM sessions")) < size:
                    time.sleep(0.2)
                scheduled_s = time.perf_counter() - started
                actions0, cpu0 = (
                    int(db.scalar("SELECT count(*) FROM warmup_actions")),
                    cpu_seconds(daemon.pid),
                )
                time.sleep(seconds)
                actions = int(db.scalar("SELECT count(*) FROM warmup_actions")) - actions0
                cpu = cpu_seconds(daemon.pid) - cpu0
                rss_after = rss_mb(daemon.pid)
                stop_codes = [daemon.stop(check=False)]
                restart_s = daemon.start()
                rss_restart = rss_mb(daemon.pid)
                stop_codes.append(daemon.stop(check=False))
            finally:
                daemon.kill()
    figures = {
        "sessions": size,
        "period_s": period,
        "bulk_insert_s": round(insert_s, 2),
        "ready_s": round(ready_s, 2),
        "all_scheduled_s": round(scheduled_s, 2),
        "rss_ready_mb": round(rss_ready, 1),
        "rss_after_mb": round(rss_after, 1),
        "actions_per_s": round(actions / seconds, 1),
        "cpu_ms_per_action": round(1000 * cpu / max(actions, 1), 3),
        "restart_ready_s": round(restart_s, 2),
        "rss_restart_mb": round(rss_restart, 1),
        "stop_exit_codes": stop_codes,  # 0: a clean stop
    }
    print(figures)
    return figures


def slope(points: list[dict[str, Any]], figure: str) -> float:
    """The least-squares slope of log(figure) against log(sessions)."""
    xs = [math.log(p["sessions"]) for p in points]
    ys = [math.log(max(p[figure], 1e-6)) for p in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    points = [one_size(int(size), args.seconds) for size in args.sizes.split(",")]
    figures = (
        "ready_s",
        "all_scheduled_s",
        "rss_ready_mb",
        "rss_after_mb",
        "cpu_ms_per_action",
        "restart_ready_s",
    )
    slopes = {name: round(slope(points, name), 3) for name in figures} if len(points) > 1 else {}
    for name, value in slopes.items():
        print(f"log-log slope of {name}: {value}")
    write_results("scale", {"runs_due_per_s": RATE, "sizes": points, "slopes": slopes})


if __name__ == "__main__":
    main()
