"""Start-up at scale: ``heatup run`` with N registered sessions (default 100,000).

Registers N sessions (bulk SQL) in a fresh SQLite database, starts the real daemon against a
sandbox and measures, from the process start:
- the time until systemd's ``READY=1`` (read on a real notify socket);
- the time until every session has its next slot (the first reconcile of all N rows);
- the daemon's RSS (from /proc) once ready and after the first dispatches.
DESIGN: 100,000 sessions, start to ready in under 10 s, RSS under 400 MB.

Run: .venv/bin/python -m bench.startup [SESSIONS]
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from heatup_daemon.testing import sandbox_process

HEATUP = Path(sys.executable).with_name("heatup")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    folder = Path(tempfile.mkdtemp(prefix="heatup-bench-"))
    database = folder / "heatup.db"
    env = {**os.environ, "HEATUP_DATABASE__URL": f"sqlite:///{database}"}
    subprocess.run([str(HEATUP), "db", "upgrade"], env=env, check=True, capture_output=True)
    with sqlite3.connect(database) as connection:
        connection.executemany(
            "INSERT INTO sessions (gateway_session_id, schedule, jitter_seconds, timezone, "
            "enabled, state) VALUES (?, '6h', 21599, 'UTC', 1, 'active')",
            ((i,) for i in range(1, count + 1)),
        )
    print(f"{count} sessions registered in {database}")
    notify_path = folder / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    with sandbox_process() as gateway:
        started = time.perf_counter()
        daemon = subprocess.Popen(
            [str(HEATUP), "run"],
            env={
                **env,
                "NOTIFY_SOCKET": str(notify_path),
                "HEATUP_GATEWAY__BASE_URL": gateway,
                "HEATUP_EXECUTOR__TIME_SCALE": "0",
                "HEATUP_SERVICE__LOG_LEVEL": "WARNING",
            },
            stdout=subprocess.DEVNULL,
        )
        try:
            notify.settimeout(600)
            while b"READY=1" not in notify.recv(4096):
                pass
            ready_s = time.perf_counter() - started
            print(f"start to READY=1:            {ready_s:7.2f} s")
            print(f"RSS at ready:                {rss_mb(daemon.pid):7.1f} MB")
            with sqlite3.connect(database) as connection:
                scheduled = connection.execute(
                    "SELECT count(next_run_at) FROM sessions"
                ).fetchone()[0]
            print(f"sessions scheduled at ready: {scheduled:7d} of {count}")
            time.sleep(10)
            print(f"RSS after 10 s of running:   {rss_mb(daemon.pid):7.1f} MB")
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=60)
            notify.close()


if __name__ == "__main__":
    main()
