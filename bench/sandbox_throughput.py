"""How many simple requests per second ``heatup sandbox`` serves on this machine.

Two load generators against one sandbox process on loopback, each for DURATION seconds:
- wrk (C, from Debian's ``wrk`` package) when installed: GET /api/external/sessions/{uid};
- a Python asyncio loop on one shared httpx2.AsyncClient (what heatup itself uses), with
  CONCURRENCY requests in flight: GET session, and POST invoke GetDialogs.

Run: .venv/bin/python bench/sandbox_throughput.py [DURATION_S] [CONCURRENCY]
The issue asks for at least 2,000 simple requests/s on the 2-core machine.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import time

import httpx2 as httpx

from bench.common import sandbox_process as sandbox

QUERY = (
    "pylogram.raw.functions.messages.GetDialogs(offset_date=0, offset_id=0, "
    "offset_peer=pylogram.raw.types.InputPeerEmpty(), limit=20, hash=0)"
)


def wrk(url: str, duration_s: int, connections: int) -> float | None:
    if shutil.which("wrk") is None:
        return None
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration_s}s", f"{url}/api/external/sessions/7"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} error responses")
    return float(match.group(1)) if match else None


async def httpx_load(
    url: str, duration_s: float, concurrency: int, invoke: bool
) -> tuple[float, int]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    body = {"method": "invoke", "params": {"query": QUERY, "retries": 3, "timeout": 15}}
    done = 0
    failures = 0
    async with httpx.AsyncClient(base_url=f"{url}/api/external", limits=limits) as client:
        stop = time.perf_counter() + duration_s

        async def worker(uid: int) -> None:
            nonlocal done, failures
            while time.perf_counter() < stop:
                if invoke:
                    response = await client.post(f"/sessions/{uid}/rpc/invoke", json=body)
                    ok = response.status_code == 200 and response.json()["success"]
                else:
                    response = await client.get(f"/sessions/{uid}")
                    ok = response.status_code == 200
                done += 1
                failures += not ok

        started = time.perf_counter()
        await asyncio.gather(*(worker(uid) for uid in range(1, concurrency + 1)))
        elapsed = time.perf_counter() - started
    return done / elapsed, failures


def main() -> None:
    duration_s = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    with sandbox() as url:
        rate = wrk(url, duration_s, concurrency)
        shown = "not installed" if rate is None else f"{rate:8.0f} req/s"
        print(f"wrk GET session:            {shown}")
        for name, invoke in (("GET session", False), ("POST invoke GetDialogs", True)):
            rate, failures = asyncio.run(httpx_load(url, duration_s, concurrency, invoke))
            print(f"httpx2 {name:21s} {rate:8.0f} req/s ({failures} failures)")


if __name__ == "__main__":
    main()
