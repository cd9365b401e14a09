"""Gateway client cost: requests/s and client CPU per request, for a bare httpx loop, a bare
httpx2 loop and heatup's ``HttpGateway`` (browse_dialogs: one invoke each), against one
``heatup sandbox`` process with a fixed added latency.

Run: .venv/bin/python -m bench.gateway_client [LATENCY_MS] [IN_FLIGHT] [DURATION_S]
Defaults: 100 ms latency (a plausible gateway), 100 requests in flight, 4 s per client.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import httpx
import httpx2
import uvloop

from bench.common import sandbox_process
from heatup_daemon.config import GatewaySettings
from heatup_daemon.gateway import HttpGateway, tl

BODY = {
    "method": "invoke",
    "params": {"query": tl.get_dialogs(20), "retries": 3, "timeout": 15, "sleep_threshold": 0},
}


async def measure(
    call: Callable[[int], Awaitable[Any]], in_flight: int, duration_s: float
) -> tuple[float, float]:
    done = 0
    stop = time.perf_counter() + duration_s

    async def worker(uid: int) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await call(uid)
            done += 1

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(uid) for uid in range(1, in_flight + 1)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return done / elapsed, 1000 * cpu / max(done, 1)


async def bare(module: Any, url: str, in_flight: int, duration_s: float) -> tuple[float, float]:
    limits = module.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    async with module.AsyncClient(base_url=f"{url}/api/external", limits=limits) as client:

        async def call(uid: int) -> None:
            response = await client.post(f"/sessions/{uid}/rpc/invoke", json=BODY)
            assert response.json()["success"]

        return await measure(call, in_flight, duration_s)


async def heatup(url: str, in_flight: int, duration_s: float) -> tuple[float, float]:
    gateway = HttpGateway(GatewaySettings(base_url=url, max_connections=in_flight))
    try:
        return await measure(gateway.browse_dialogs, in_flight, duration_s)
    finally:
        await gateway.aclose()


def main() -> None:
    latency_ms = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    in_flight = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    duration_s = float(sys.argv[3]) if len(sys.argv) > 3 else 4.0
    print(f"sandbox latency {latency_ms} ms, {in_flight} requests in flight, {duration_s} s each")
    with sandbox_process("--faults", f"latency={latency_ms}ms") as url:
        clients: tuple[tuple[str, Callable[[], Coroutine[Any, Any, tuple[float, float]]]], ...] = (
            ("bare httpx 0.28", lambda: bare(httpx, url, in_flight, duration_s)),
            ("bare httpx2", lambda: bare(httpx2, url, in_flight, duration_s)),
            ("heatup HttpGateway", lambda: heatup(url, in_flight, duration_s)),
        )
        for name, run in clients:
            rate, cpu_ms = uvloop.run(run())
            print(f"{name:20s} {rate:8.0f} req/s   client CPU {cpu_ms:6.2f} ms/request")


if __name__ == "__main__":
    main()
