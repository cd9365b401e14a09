"""How long the console's pages take on a large pool: SESSIONS sessions (1,000,000) and RUNS
runs (10,000,000) over the last DAYS days (7), each run with two actions, served by the real
``heatup run``.

The history is written in bulk as a pool of that size would have left it: runs spread evenly
over the days, mostly succeeded, some partial, failed, skipped or interrupted. The sessions'
next slots are a day away, so that the daemon serves pages and runs nothing while it is
measured. Each page is fetched REPEAT times over loopback HTTP, once the daemon has rolled
the history up by hour (``heatup_daemon.db.activity``) and its first reconcile has applied
every row, and on PostgreSQL once the rows that reconcile rewrote are vacuumed (as
autovacuum does within minutes; before, a deep page reads their dead versions too). The
figures are the wall time of whole responses, as a browser waits for them. DESIGN: under
300 ms for every page.

Run from a checkout: ``.venv/bin/python -m bench.console_pages [--databases
sqlite,postgresql] [--sessions 1000000] [--runs 10000000] [--repeat 20]``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Final

import httpx2

from bench.common import (
    Database,
    Heatup,
    database,
    percentile,
    sandbox_for,
    workspace,
    write_results,
)

DAYS: Final = 7
# The runs' statuses, by the share of a hundred runs each takes.
SHARES: Final = (("succeeded", 86), ("partial", 6), ("failed", 4), ("skipped", 2))


def add_history(db: Database, sessions: int, runs: int) -> None:
    """``runs`` finished runs of sessions 1..``sessions``, the newest a minute ago and the
    oldest ``DAYS`` days ago, two actions each."""
    step_s = DAYS * 86_400 / runs
    status = (
        "CASE "
        + " ".join(
            f"WHEN g % 100 < {sum(share for _, share in SHARES[: i + 1])} THEN '{name}'"
            for i, (name, _) in enumerate(SHARES)
        )
        + " ELSE 'interrupted' END"
    )
    if db.kind == "sqlite":
        moment = f"strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || (60 + g * {step_s}) || ' seconds')"
        series = f"WITH RECURSIVE n(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM n WHERE g < {runs})"
        source = f"{series} SELECT g, {moment} || '000' AS t FROM n"
        later = "strftime('%Y-%m-%d %H:%M:%f', t, '+40 seconds') || '000'"
        action_end = (
            "strftime('%Y-%m-%d %H:%M:%f', r.started_at, '+' || (10 + 10 * k.k) || ' seconds') "
            "|| '000'"
        )
        pairs = "(SELECT 0 AS k UNION ALL SELECT 1)"
    else:
        moment = f"now() - (60 + g * {step_s}) * interval '1 second'"
        source = f"SELECT g, {moment} AS t FROM generate_series(1, {runs}) g"
        later = "t + interval '40 seconds'"
        action_end = "r.started_at + (10 + 10 * k.k) * interval '1 second'"
        pairs = "(SELECT generate_series(0, 1) AS k)"
    session = f"(g % {sessions}) + 1"
    db.sql(
        "INSERT INTO warmup_runs (session_id, gateway_session_id, trigger, scheduled_for, "
        "due_at, status, node, started_at, heartbeat_at, finished_at, error) "
        f"SELECT {session}, {session}, 'schedule', t, t, {status}, 'bench', t, {later}, "
        f"{later}, CASE WHEN g % 100 >= 92 THEN 'gateway: FLOOD_WAIT' END FROM ({source}) s"
    )
    db.sql(
        "INSERT INTO warmup_actions (run_id, seq, kind, channel, started_at, finished_at, "
        "outcome, error_code) SELECT r.id, k.k, CASE WHEN k.k = 0 THEN 'read_messages' ELSE "
        "'idle' END, CASE WHEN k.k = 0 THEN 'durov' END, r.started_at, "
        f"{action_end}, CASE WHEN r.status = 'failed' AND k.k = 0 THEN 'failed' "
        "WHEN r.status = 'partial' AND k.k = 1 THEN 'unknown' ELSE 'ok' END, "
        "CASE WHEN r.status = 'failed' AND k.k = 0 THEN 'FLOOD_WAIT' END "
        f"FROM warmup_runs r, {pairs} k"
    )
    if db.kind == "postgresql":
        db.sql("VACUUM ANALYZE")
    else:
        db.sql("ANALYZE")


def pages(sessions: int) -> dict[str, str]:
    """The pages measured, by name: each page of the console, and the costly ways to ask
    for one (a search, a filter, a far page, a sort on an unindexed column)."""
    middle = sessions // 2
    return {
        "overview": "/ui",
        "overview, by last run": "/ui?sort=last_run&order=desc",
        "overview, by standing": "/ui?sort=standing",
        "overview, by schedule": "/ui?sort=schedule",
        "overview, search a gateway id": f"/ui?q={middle}",
        "overview, search a label": "/ui?q=nobody-has-this-label",
        "overview, page 5,000 by next run": "/ui?page=5000&sort=next_run",
        "overview, standing needs attention": "/ui?standing=needs_attention",
        "session": f"/ui/sessions/{middle}",
        "run": "/ui/runs/5000000",
        "activity": "/ui/activity",
        "activity, failed": "/ui/activity?status=failed",
        "activity, one session": f"/ui/activity?session={middle}",
        "activity, one day a week ago": "/ui/activity?until=" + _days_ago(6),
        "activity, next page": "/ui/activity?before=9000000",
        "channels": "/ui/channels",
    }


def _days_ago(days: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() - days * 86_400))


def settle_in(db: Database, timeout_s: float = 1800.0) -> float:
    """Seconds until the daemon's first reconcile has applied every row (it rewrites each
    one after a bulk insert), then, on PostgreSQL, a ``VACUUM ANALYZE`` as autovacuum would
    make of the million rows it left dead: the pool as it stands from then on."""
    started = time.perf_counter()
    while db.scalar("SELECT count(*) FROM sessions WHERE needs_reconcile") not in (0, "0"):
        if time.perf_counter() - started > timeout_s:
            raise RuntimeError(f"the rows were not reconciled within {timeout_s:.0f} s")
        time.sleep(1)
    if db.kind == "postgresql":
        db.sql("VACUUM ANALYZE")
    return time.perf_counter() - started


def wait_rolled_up(db: Database, timeout_s: float = 1800.0) -> float:
    """Seconds until the daemon's first roll-up has counted every hour it keeps (a week
    and a day, to the current one) and the channels' members: its backfill."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        hours = int(db.scalar("SELECT count(DISTINCT hour) FROM run_hours") or 0)
        members = int(db.scalar("SELECT count(*) FROM channel_members") or 0)
        if hours >= (DAYS + 1) * 24 and members > 0:
            return time.perf_counter() - started
        time.sleep(1)
    raise RuntimeError(f"the history was not rolled up within {timeout_s:.0f} s")


def timed(client: httpx2.Client, path: str, repeat: int) -> dict[str, Any]:
    took: list[float] = []
    for _ in range(repeat):
        started = time.perf_counter()
        answer = client.get(path)
        took.append(time.perf_counter() - started)
        if answer.status_code != 200:
            raise RuntimeError(f"{path} answered {answer.status_code}: {answer.text[:300]}")
    return {
        "path": path,
        "p50_ms": round(1000 * percentile(took, 0.5), 1),
        "p95_ms": round(1000 * percentile(took, 0.95), 1),
        "max_ms": round(1000 * max(took), 1),
    }


def one_database(kind: str, sessions: int, runs: int, repeat: int) -> dict[str, Any]:
    with workspace() as folder, database(kind, folder) as db:
        started = time.perf_counter()
        db.add_sessions(sessions, "1d", 3600, joined=3)
        db.settle(86_400, first_in_s=86_400)
        add_history(db, sessions, runs)
        filled_s = time.perf_counter() - started
        print(f"{kind}: {sessions} sessions and {runs} runs written in {filled_s:.0f} s")
        with sandbox_for(folder, 1) as gateway:
            daemon = Heatup(db.url, gateway, folder)
            ready_s = daemon.start()
            try:
                rolled_s = wait_rolled_up(db)
                print(f"{kind}: ready in {ready_s:.1f} s, history rolled up in {rolled_s:.0f} s")
                settled_s = settle_in(db)
                base = f"http://127.0.0.1:{daemon.port}"
                with httpx2.Client(base_url=base, timeout=60) as client:
                    timings = {
                        name: timed(client, path, repeat) for name, path in pages(sessions).items()
                    }
            finally:
                daemon.stop()
    for name, figures in timings.items():
        print(f"  {name:32} p50 {figures['p50_ms']:7.1f} ms  p95 {figures['p95_ms']:7.1f} ms")
    return {
        "database": kind,
        "sessions": sessions,
        "runs": runs,
        "actions": 2 * runs,
        "ready_s": round(ready_s, 1),
        "rolled_up_s": round(rolled_s, 1),
        "reconciled_and_vacuumed_s": round(settled_s, 1),
        "pages": timings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    points = [
        one_database(kind, args.sessions, args.runs, args.repeat)
        for kind in args.databases.split(",")
    ]
    write_results("console_pages", {"points": points})


if __name__ == "__main__":
    main()
