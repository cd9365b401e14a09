"""A production day on one node: a settled pool at the natural pace.

SIZE sessions of old accounts, each a member of 3 pool channels, on ``6h`` with 6 h of jitter
(four runs a day each: SIZE / 21,600 falling due a second), the real ``heatup run`` at time
scale 1 with ``max_concurrent_runs`` 20,000 and every other setting at its default, and
``heatup sandbox`` as the gateway. Runs last minutes, so thousands are in flight while the
action rate is modest: the life of an operator's node.

After WARMUP seconds (the runs in flight reach their steady number), measured over SECONDS:

- runs due and started per second (slot rows by ``due_at`` and by ``started_at``);
- dispatch lag p50 / p99: ``started_at - due_at`` of every run started in the window;
- runs in flight (``running`` rows, sampled), actions per second;
- heatup's CPU in cores and its RSS; the sandbox's CPU, and the database server's where it is
  a process of its own (PostgreSQL: every ``postgres`` process on the machine).

DESIGN: 1,000,000 sessions at a lag p99 under 1 s on at most half a core and under 1 GB;
2,000,000 at a lag p99 under 1 s. ``python -m bench.plot`` draws lag and CPU against the
pool size from the JSON this writes. Run from a checkout:
``.venv/bin/python -m bench.production_day [--databases sqlite,postgresql]
[--sizes 100000,1000000,2000000] [--warmup 240] [--seconds 150]``.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bench.common import (
    RESULTS,
    Database,
    Heatup,
    commit,
    cpu_seconds,
    database,
    percentile,
    postgres_cpu_seconds,
    rss_mb,
    sandbox_for,
    server_pid,
    workspace,
    write_results,
)

PERIOD: Final = "6h"
PERIOD_S: Final = 21_600
JITTER_S: Final = 21_599  # "6 h of jitter": the most an interval of 6 h allows
JOINED: Final = 3  # pool channels each session is already a member of
MAX_CONCURRENT_RUNS: Final = 20_000
SAMPLE_S: Final = 5.0


def _stamp(moment: datetime, kind: str) -> str:
    """``moment`` as a literal the database compares with its stored times."""
    if kind == "sqlite":  # naive UTC text, as heatup writes it
        return f"'{moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=' ')}'"
    return f"'{moment.isoformat()}'::timestamptz"


def _seconds(later: str, earlier: str, kind: str) -> str:
    if kind == "sqlite":
        return f"(julianday({later}) - julianday({earlier})) * 86400.0"
    return f"extract(epoch FROM {later} - {earlier})"


def window_figures(db: Database, begin: datetime, end: datetime) -> dict[str, Any]:
    """What the slot rows and action rows say of [begin, end)."""
    kind, seconds = db.kind, (end - begin).total_seconds()
    lo, hi = _stamp(begin, kind), _stamp(end, kind)
    lags = [
        float(lag)
        for (lag,) in db.sql(
            f"SELECT {_seconds('started_at', 'due_at', kind)} FROM warmup_runs "
            f"WHERE trigger = 'schedule' AND status <> 'skipped' "
            f"AND started_at >= {lo} AND started_at < {hi}"
        )
    ]
    due = int(
        db.scalar(
            "SELECT count(*) FROM warmup_runs WHERE trigger = 'schedule' "
            f"AND due_at >= {lo} AND due_at < {hi}"
        )
    )
    skipped = int(
        db.scalar(
            "SELECT count(*) FROM warmup_runs WHERE status = 'skipped' "
            f"AND started_at >= {lo} AND started_at < {hi}"
        )
    )
    actions = int(
        db.scalar(
            f"SELECT count(*) FROM warmup_actions WHERE finished_at >= {lo} AND finished_at < {hi}"
        )
    )
    return {
        "runs_due_per_s": round(due / seconds, 1),
        "runs_started_per_s": round(len(lags) / seconds, 1),
        "lag_p50_s": round(percentile(lags, 0.50), 3),
        "lag_p99_s": round(percentile(lags, 0.99), 3),
        "lag_max_s": round(max(lags, default=float("nan")), 3),
        "actions_per_s": round(actions / seconds, 1),
        "slots_skipped": skipped,
    }


def one_day(kind: str, size: int, warmup_s: float, seconds: float) -> dict[str, Any]:
    with workspace() as folder, database(kind, folder) as db:
        inserted = time.perf_counter()
        db.add_sessions(size, PERIOD, JITTER_S, joined=JOINED)
        db.settle(PERIOD_S)
        insert_s = time.perf_counter() - inserted
        with sandbox_for(folder, size, flood_joins=1_000_000) as gateway:
            env = {"HEATUP_SCHEDULER__MAX_CONCURRENT_RUNS": str(MAX_CONCURRENT_RUNS)}
            daemon = Heatup(db.url, gateway, folder, env)
            try:
                ready_s = daemon.start()
                sandbox_pid = server_pid(gateway)
                print(f"{kind} {size:,}: inserted in {insert_s:.0f} s, ready in {ready_s:.1f} s")
                time.sleep(warmup_s)
                begin = datetime.now(UTC)
                cpu0, box0 = cpu_seconds(daemon.pid), cpu_seconds(sandbox_pid)
                db0 = postgres_cpu_seconds() if kind == "postgresql" else None
                in_flight: list[int] = []
                deadline = time.perf_counter() + seconds
                while time.perf_counter() < deadline:
                    in_flight.append(
                        int(db.scalar("SELECT count(*) FROM warmup_runs WHERE status = 'running'"))
                    )
                    time.sleep(min(SAMPLE_S, max(0.0, deadline - time.perf_counter())))
                end = datetime.now(UTC)
                elapsed = (end - begin).total_seconds()
                cpu = cpu_seconds(daemon.pid) - cpu0
                box = cpu_seconds(sandbox_pid) - box0
                db_cpu = postgres_cpu_seconds() - db0 if db0 is not None else None
                rss = rss_mb(daemon.pid)
                # Runs due at the window's end are claimed a moment later: let them land.
                time.sleep(5)
                figures = window_figures(db, begin, end - timedelta(seconds=1))
                code = daemon.stop(check=False)
            finally:
                daemon.kill()
    result = {
        "database": kind,
        "sessions": size,
        "bulk_insert_s": round(insert_s, 1),
        "ready_s": round(ready_s, 2),
        **figures,
        "in_flight": round(sum(in_flight) / max(len(in_flight), 1)),
        "heatup_cores": round(cpu / elapsed, 3),
        "rss_mb": round(rss, 1),
        "sandbox_cores": round(box / elapsed, 3),
        "database_cores": round(db_cpu / elapsed, 3) if db_cpu is not None else None,
        "stop_exit_code": code,
    }
    print(result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--sizes", default="100000,1000000,2000000")
    parser.add_argument("--warmup", type=float, default=240.0)
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument("--name", default="production_day", help="the results file's name")
    args = parser.parse_args()
    settings = {
        "schedule": PERIOD,
        "jitter_s": JITTER_S,
        "joined_channels": JOINED,
        "max_concurrent_runs": MAX_CONCURRENT_RUNS,
        "warmup_s": args.warmup,
        "window_s": args.seconds,
    }
    # The results are written after each point. A point measured again replaces the one of
    # the same database and size; the others measured with the same settings are kept, each
    # with the commit and date it was measured at.
    path = RESULTS / f"{args.name}.json"
    earlier = json.loads(path.read_text())["figures"] if path.exists() else {}
    points = earlier.get("points", []) if _same(earlier, settings) else []
    for kind in args.databases.split(","):
        for size in map(int, args.sizes.split(",")):
            point = {
                **one_day(kind, size, args.warmup, args.seconds),
                "commit": commit(),
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            points = [p for p in points if (p["database"], p["sessions"]) != (kind, size)]
            points.append(point)
            points.sort(key=lambda p: (p["database"] != "sqlite", p["sessions"]))
            write_results(args.name, {**settings, "points": points})


def _same(figures: dict[str, Any], settings: dict[str, Any]) -> bool:
    return all(figures.get(key) == value for key, value in settings.items())


if __name__ == "__main__":
    main()
