"""Gateway client cost: requests/s and client CPU per request of bare client loops and of
heatup's ``HttpGateway`` (browse_dialogs: one invoke each), against one ``heatup sandbox``.

Two loads:

- ``saturated``: IN_FLIGHT requests always on the wire (100 by default) against a sandbox
  with a fixed added latency (100 ms): every pooled connection is busy.
- ``natural``: the life of a node at the natural pace. WORKERS runs in flight (10,000), each
  pausing 30-90 s between requests (about 170 requests/s), against a sandbox with no added
  latency: a request or two on the wire at any moment, and most pooled connections idle.
  A pool that checks every idle connection on every request pays for all of them here.

Run: ``.venv/bin/python -m bench.gateway_client [--load saturated|natural|both]
[--in-flight 100] [--latency-ms 100] [--workers 10000] [--seconds 20]`` (one load alone
writes ``gateway_client_LOAD.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import httpx2
import uvloop

from bench.common import sandbox_for, workspace, write_results
from heatup_daemon.config.sections import GatewaySettings
from heatup_daemon.gateway import HttpGateway, tl

BODY = {
    "method": "invoke",
    "params": {"query": tl.get_dialogs(20), "retries": 3, "timeout": 15, "sleep_threshold": 0},
}
# The natural pace: a run's pause between two requests.
THINK_S = (30.0, 90.0)
MAX_CONNECTIONS = 100  # heatup's default gateway.max_connections

Call = Callable[[int], Awaitable[Any]]


async def saturated(call: Call, in_flight: int, seconds: float) -> tuple[int, float, float]:
    """Requests done, wall seconds and CPU seconds of ``in_flight`` loops calling back to back."""
    done = 0
    stop = time.perf_counter() + seconds

    async def worker(uid: int) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await call(uid)
            done += 1

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(uid) for uid in range(1, in_flight + 1)))
    return done, time.perf_counter() - started, time.process_time() - cpu


async def natural(call: Call, workers: int, seconds: float) -> tuple[int, float, float]:
    """The same over ``seconds`` of ``workers`` runs pausing THINK_S between requests, after
    a warm-up as long as the longest pause (every worker is then in its steady rhythm)."""
    rng = random.Random(7)
    done, measuring = 0, False
    stop = time.perf_counter() + THINK_S[1] + seconds

    async def worker(uid: int) -> None:
        nonlocal done
        await asyncio.sleep(rng.uniform(0, THINK_S[1]))
        while time.perf_counter() < stop:
            await call(uid)
            done += measuring
            await asyncio.sleep(rng.uniform(*THINK_S))

    tasks = [asyncio.ensure_future(worker(uid)) for uid in range(1, workers + 1)]
    await asyncio.sleep(THINK_S[1])
    measuring, started, cpu = True, time.perf_counter(), time.process_time()
    await asyncio.sleep(seconds)
    measuring = False
    figures = done, time.perf_counter() - started, time.process_time() - cpu
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return figures


def bare(module: Any, url: str) -> Callable[[], Any]:
    """A bare loop's client: ``module``'s AsyncClient with heatup's default pool size."""

    def make() -> Any:
        limits = module.Limits(
            max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS
        )
        return module.AsyncClient(base_url=f"{url}/api/external", limits=limits)

    return make


@dataclass(frozen=True, slots=True)
class _Answer:
    """A bare loop's answer, read as httpx's is (``.json()``)."""

    body: Any

    def json(self) -> Any:
        return self.body


class BareAiohttp:
    """A bare loop's client on aiohttp, heatup's gateway client's library."""

    def __init__(self, url: str) -> None:
        self._url = f"{url}/api/external"
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS))

    async def post(self, path: str, json: Any) -> _Answer:
        async with self._session.post(self._url + path, json=json) as response:
            return _Answer(await response.json())

    async def aclose(self) -> None:
        await self._session.close()


async def measure(
    load: str, make: Callable[[], Any], heatup: bool, size: int, seconds: float
) -> dict[str, float]:
    client = make()
    if heatup:
        call: Call = client.browse_dialogs
    else:

        async def call(uid: int) -> None:
            response = await client.post(f"/sessions/{uid}/rpc/invoke", json=BODY)
            assert response.json()["success"]

    try:
        run = saturated if load == "saturated" else natural
        done, wall, cpu = await run(call, size, seconds)
    finally:
        await client.aclose()
    return {"requests_per_s": round(done / wall, 1), "cpu_ms_per_request": 1000 * cpu / done}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", choices=("saturated", "natural", "both"), default="both")
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--workers", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    loads = ("saturated", "natural") if args.load == "both" else (args.load,)
    results: dict[str, Any] = {}
    for load in loads:
        faults = ("--faults", f"latency={args.latency_ms}ms") if load == "saturated" else ()
        size = args.in_flight if load == "saturated" else args.workers
        print(f"{load}: {size} in flight" + (f", {args.latency_ms} ms latency" if faults else ""))
        with workspace() as folder, sandbox_for(folder, size, *faults) as url:
            settings = GatewaySettings(base_url=url, max_connections=MAX_CONNECTIONS)
            clients: tuple[tuple[str, Callable[[], Any], bool], ...] = (
                ("bare httpx 0.28", bare(httpx, url), False),
                ("bare httpx2", bare(httpx2, url), False),
                ("bare aiohttp", functools.partial(BareAiohttp, url), False),
                ("heatup HttpGateway", functools.partial(HttpGateway, settings), True),
            )
            figures = {}
            for name, make, heatup in clients:
                figures[name] = uvloop.run(measure(load, make, heatup, size, args.seconds))
                rate, cpu_ms = figures[name].values()
                print(f"  {name:20s} {rate:8.0f} req/s   client CPU {cpu_ms:6.3f} ms/request")
            heatup_ms = figures["heatup HttpGateway"]["cpu_ms_per_request"]
            ratios = {
                bare_name: round(heatup_ms / figures[bare_name]["cpu_ms_per_request"], 2)
                for bare_name in ("bare httpx2", "bare aiohttp")
            }
            for bare_name, ratio in ratios.items():
                print(f"  HttpGateway's CPU per request / {bare_name}'s: {ratio:.2f}")
            results[load] = {"in_flight": size, "clients": figures, "cost_ratios": ratios}
    write_results("gateway_client" if len(loads) > 1 else f"gateway_client_{loads[0]}", results)


if __name__ == "__main__":
    main()
