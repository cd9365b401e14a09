"""What a reconcile pass costs on a large registry: SIZE settled sessions (1,000,000), every
row applied, then one pass with no edits and one after EDITS admin edits in plain SQL.

Measured per pass: wall time, and CPU (this process's, which on SQLite includes the
database's work; on PostgreSQL the server's too, every ``postgres`` process). DESIGN: a pass
with no edits under 50 ms of CPU at 1,000,000 sessions.

Run from a checkout: ``.venv/bin/python -m bench.reconcile [--databases sqlite,postgresql]
[--size 1000000] [--edits 1000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from datetime import UTC, datetime
from typing import Any

from bench.common import Database, database, postgres_cpu_seconds, workspace, write_results
from heatup_daemon.config.sections import DatabaseSettings
from heatup_daemon.db.repository import open_repository
from heatup_daemon.scheduling.scheduler import RECONCILE_BATCH
from heatup_daemon.scheduling.slots import Slots


async def one_pass(db: Database, kind: str) -> dict[str, float]:
    """A whole reconcile (every batch) as the scheduler makes it; its cost."""
    policy = Slots(300.0, random.Random(1))
    async with open_repository(DatabaseSettings(url=db.url)) as repository:
        await repository.next_due_at()  # the engine's first connection is not the pass's
        server0 = postgres_cpu_seconds() if kind == "postgresql" else 0.0
        wall0, cpu0 = time.perf_counter(), time.process_time()
        after_id, examined = 0, 0
        while True:
            batch = await repository.reconcile(policy, datetime.now(UTC), after_id, RECONCILE_BATCH)
            examined += batch.examined
            if batch.examined < RECONCILE_BATCH:
                break
            after_id = batch.last_id
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        server = postgres_cpu_seconds() - server0 if kind == "postgresql" else 0.0
    return {
        "rows_examined": examined,
        "wall_ms": round(1000 * wall, 1),
        "cpu_ms": round(1000 * (cpu + server), 1),
    }


def one_database(kind: str, size: int, edits: int) -> dict[str, Any]:
    with workspace() as folder, database(kind, folder) as db:
        db.add_sessions(size, "6h", 21_599, joined=3)
        db.settle(21_600)
        first = asyncio.run(one_pass(db, kind))  # every row is marked once after an upgrade
        # Right after the first pass cleared a million marks, PostgreSQL's statistics still
        # say every row is marked (and its index holds the dead entries) until autovacuum
        # runs, within a minute of such a change: measured both before and after.
        stale = asyncio.run(one_pass(db, kind))
        if kind == "postgresql":
            db.sql("VACUUM ANALYZE sessions")
        quiet = asyncio.run(one_pass(db, kind))
        step = max(1, size // edits)
        db.sql(f"UPDATE sessions SET label = 'edited' WHERE id % {step} = 0")
        edited = asyncio.run(one_pass(db, kind))
    result = {
        "database": kind,
        "sessions": size,
        "first": first,
        "no_edits_before_autovacuum": stale,
        "no_edits": quiet,
    }
    result[f"{edits}_edits"] = edited
    print(result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--edits", type=int, default=1_000)
    args = parser.parse_args()
    points = [one_database(kind, args.size, args.edits) for kind in args.databases.split(",")]
    write_results("reconcile", {"points": points})


if __name__ == "__main__":
    main()
