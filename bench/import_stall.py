"""The node stays responsive while the console imports a 32 MiB file: the real ``heatup run``
with a pool of live sessions, a file of short rows uploaded through ``/ui/sessions/import``,
and ``/healthz`` asked every 10 ms from another process's thread all the while.

Measured: the upload's wall seconds and rows; ``/healthz`` latency (p50, p99, longest) and
the longest gap between two answers during the import, and the same while idle before it.
A gap is the event loop's stall plus one poll interval. Target (issue "interleavings"): the
loop's longest stall during a 32 MiB import below 100 ms. Run from a checkout:
``.venv/bin/python -m bench.import_stall [--databases sqlite,postgresql] [--live 2000]``.
"""

from __future__ import annotations

import argparse
import itertools
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx2

from bench.common import Heatup, database, percentile, sandbox_for, workspace, write_results

LIMIT_BYTES = 32 * 1024 * 1024
POLL_S = 0.01
FIRST_ID = 10_000_000


def short_rows(folder: Path) -> tuple[Path, int]:
    """As many disabled sessions as fit in the upload's limit, a short line each."""
    path, rows = folder / "many.csv", 0
    with path.open("w", encoding="utf-8") as out:
        size = out.write("gateway_id,schedule,enabled\n")
        while True:
            line = f"{FIRST_ID + rows},1d,false\n"
            if size + len(line) > LIMIT_BYTES - 4096:  # room for the form's other parts
                break
            size += out.write(line)
            rows += 1
    return path, rows


class Poller(threading.Thread):
    """``/healthz`` every ``POLL_S``: each answer's latency and when it came."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.answers: list[tuple[float, float]] = []  # (answered at, latency)
        self.done = threading.Event()

    def run(self) -> None:
        with httpx2.Client(base_url=self.base, timeout=30) as client:
            while not self.done.is_set():
                began = time.perf_counter()
                client.get("/healthz")
                ended = time.perf_counter()
                self.answers.append((ended, ended - began))
                time.sleep(max(0.0, POLL_S - (ended - began)))

    def figures(self, since: float, until: float) -> dict[str, float]:
        window = [(at, latency) for at, latency in self.answers if since <= at <= until]
        latencies = [latency for _, latency in window]
        moments = [at for at, _ in window]
        gaps = [b - a for a, b in itertools.pairwise(moments)]
        return {
            "answers": len(window),
            "p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
            "longest_ms": round(max(latencies) * 1000, 1),
            "longest_gap_ms": round(max(gaps) * 1000, 1),
        }


def upload(base: str, path: Path) -> tuple[float, str]:
    with httpx2.Client(base_url=base, timeout=900, headers={"Origin": base}) as client:
        page = client.get("/ui/sessions/import").text
        found = re.search(r'name="form_token" value="([^"]+)"', page)
        assert found is not None, "the import page has no form token"
        began = time.perf_counter()
        with path.open("rb") as file:
            answer = client.post(
                "/ui/sessions/import",
                data={"form_token": found.group(1)},
                files={"file": (path.name, file, "text/csv")},
            )
        took = time.perf_counter() - began
    assert answer.status_code == 200, (answer.status_code, answer.text[-500:])
    return took, answer.text


def one_database(kind: str, live: int) -> dict[str, Any]:
    with workspace() as folder, database(kind, folder) as db, sandbox_for(folder, live) as gw:
        db.add_sessions(live, "1h", 3600)
        db.settle(3600, first_in_s=5)
        path, rows = short_rows(folder)
        mib = path.stat().st_size / 2**20
        heatup = Heatup(db.url, gw, folder)
        heatup.start()
        poller = Poller(f"http://127.0.0.1:{heatup.port}")
        try:
            poller.start()
            time.sleep(10)
            idle_until = time.perf_counter()
            import_s, _ = upload(poller.base, path)
            imported_at = time.perf_counter()
            poller.done.set()
            poller.join()
            registered = db.scalar(
                f"SELECT count(*) FROM sessions WHERE gateway_session_id >= {FIRST_ID}"
            )
            assert registered == rows, (registered, rows)
            heatup.stop()
        finally:
            heatup.kill()
    result = {
        "database": kind,
        "live_sessions": live,
        "rows": rows,
        "file_mib": round(mib, 1),
        "import_s": round(import_s, 1),
        "idle": poller.figures(idle_until - 10, idle_until),
        "importing": poller.figures(imported_at - import_s, imported_at),
    }
    print(result, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--live", type=int, default=2000, help="sessions running meanwhile")
    args = parser.parse_args()
    points = [one_database(kind, args.live) for kind in args.databases.split(",")]
    write_results("import_stall", {"points": points})


if __name__ == "__main__":
    main()
