"""Many sessions at once: ``heatup sessions import`` of a CSV file of ROWS sessions (100,000)
into an empty registry, then ``heatup sessions export`` of the result, through the real
entry point, on SQLite and on PostgreSQL.

Measured: wall seconds of each command (the process from start to exit, Python's start
included), and rows per second. DESIGN (issue "the operator's desk"): 100,000 rows import
in seconds. Run from a checkout: ``.venv/bin/python -m bench.import_sessions
[--databases sqlite,postgresql] [--rows 100000]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import HEATUP, database, workspace, write_results


def pool_file(folder: Path, rows: int) -> Path:
    """A file as an operator would write it: every field, a few schedules and zones."""
    schedules = ("6h", "4h", "1d", "0 9 * * *", "*/30 * * * *")
    zones = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo")
    path = folder / "pool.csv"
    with path.open("w", encoding="utf-8") as out:
        out.write("gateway_id,schedule,jitter_seconds,timezone,label,account_created_at,enabled\n")
        for n in range(1, rows + 1):
            schedule = schedules[n % len(schedules)]
            jitter = 600 if schedule != "*/30 * * * *" else 60
            created = f"20{15 + n % 10}-0{1 + n % 9}-1{n % 10}"
            out.write(
                f"{n},{schedule},{jitter},{zones[n % len(zones)]},shard {n % 50},{created},true\n"
            )
    return path


def timed(env: dict[str, str], *args: str) -> float:
    started = time.perf_counter()
    subprocess.run([str(HEATUP), *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def one_database(kind: str, rows: int) -> dict[str, Any]:
    with workspace() as folder, database(kind, folder) as db:
        source = pool_file(folder, rows)
        env = {**os.environ, "HEATUP_DATABASE__URL": db.url}
        imported_s = timed(env, "sessions", "import", str(source))
        count = db.scalar("SELECT count(*) FROM sessions")
        audited = db.scalar("SELECT count(*) FROM audit_log")
        assert count == audited == rows, (count, audited)
        exported_s = timed(env, "sessions", "export", "--output", str(folder / "out.csv"))
        exported = sum(1 for _ in (folder / "out.csv").open(encoding="utf-8")) - 1
        assert exported == rows, exported
    result = {
        "database": kind,
        "rows": rows,
        "import_s": round(imported_s, 2),
        "import_rows_per_s": round(rows / imported_s),
        "export_s": round(exported_s, 2),
        "export_rows_per_s": round(rows / exported_s),
    }
    print(result, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    points = [one_database(kind, args.rows) for kind in args.databases.split(",")]
    write_results("import_sessions", {"points": points})


if __name__ == "__main__":
    main()
