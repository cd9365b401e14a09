"""Faults at every await of a port, drawn from the seed.

``ported(target, port, node, ...)`` is a proxy over every async method of ``target`` (the
store, the gateway, the LLM): each call first yields to the loop (as any call to a database
or a server does), then may, by the seed, be delayed, fail before its commit
(``DatabaseUnavailable``), commit and then lose its answer, time out (a long wait, then
``DatabaseUnavailable``, committed or not), or answer slowly. A node that lost the database
gets ``DatabaseUnavailable`` for every call, after a connect timeout, and the answer of a
call in flight when the partition began is lost; a dead node's calls are cancelled (a killed
process makes none).

The gateway and the LLM draw their own faults (``gateway.SimGateway``, ``llm.SimLLM``) from
the same ``Faults`` with their own rates.
"""

from __future__ import annotations

import asyncio
import inspect
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Protocol

from heatup_daemon.errors import DatabaseUnavailable
from tests.sim.loop import log_fields

# Seconds a call to a partitioned database waits before it fails (a connect timeout).
CONNECT_TIMEOUT_S: Final = (0.05, 5.0)


class Fault(StrEnum):
    """What may happen to one call of a port, or to a node."""

    YIELD = "yield"  # extra trips through the loop before the call lands
    DELAY = "delay"  # virtual seconds before the call lands
    FAIL = "fail"  # refused before its commit
    LOSE = "lose"  # committed, and the answer lost
    TIMEOUT = "timeout"  # a long wait, then a failure, committed or not
    SLOW = "slow"  # committed, the answer comes late
    PARTITION = "partition"  # a node cannot reach the database (per call refused)
    CRASH = "crash"
    RESTART = "restart"
    SKEW = "skew"
    OUTAGE = "outage"  # every node loses the database
    BROWNOUT = "brownout"  # the gateway answers every request slowly for a while
    API_BURST = "api_burst"
    IMPORT = "import"
    ADMIN_EDIT = "admin_edit"
    STOP = "stop"


PER_CALL: Final = (Fault.YIELD, Fault.DELAY, Fault.FAIL, Fault.LOSE, Fault.TIMEOUT, Fault.SLOW)


@dataclass(frozen=True, slots=True)
class Rates:
    """The chance of each per-call fault, and how long the waits last (virtual seconds)."""

    yield_p: float = 0.0
    delay_p: float = 0.0
    fail_p: float = 0.0
    lose_p: float = 0.0
    timeout_p: float = 0.0
    slow_p: float = 0.0
    delay_s: float = 1.0  # up to
    slow_s: float = 5.0  # up to
    timeout_s: float = 30.0  # exactly

    @classmethod
    def drawn(cls, rng: random.Random, storm: float) -> Rates:
        """Rates for one scenario: ``storm`` (0..1) scales how faulty the port is."""

        def p(top: float) -> float:
            return rng.uniform(0, top) * storm

        return cls(
            yield_p=p(0.3),
            delay_p=p(0.2),
            fail_p=p(0.04),
            lose_p=p(0.04),
            timeout_p=p(0.01),
            slow_p=p(0.08),
            delay_s=rng.uniform(0.05, 3.0),
            slow_s=rng.uniform(0.5, 20.0),
            timeout_s=rng.uniform(5.0, 30.0),
        )

    def thresholds(self) -> tuple[tuple[float, Fault], ...]:
        """Cumulative chances, for one draw per call."""
        total, steps = 0.0, []
        for fault, chance in (
            (Fault.FAIL, self.fail_p),
            (Fault.LOSE, self.lose_p),
            (Fault.TIMEOUT, self.timeout_p),
            (Fault.SLOW, self.slow_p),
            (Fault.DELAY, self.delay_p),
            (Fault.YIELD, self.yield_p),
        ):
            total += chance
            steps.append((total, fault))
        return tuple(steps)


class Weather:
    """Whether faults are drawn at all (the end of a scenario heals them)."""

    def __init__(self) -> None:
        self.calm = False


class Faults:
    """The per-call draws of one port of one node, and the count of every fault injected."""

    def __init__(
        self, rng: random.Random, rates: Rates, counts: Counter[str], weather: Weather
    ) -> None:
        self.rng = rng
        self.rates = rates
        self.counts = counts
        self.weather = weather
        self._steps = rates.thresholds()

    def draw(self) -> Fault | None:
        roll = self.rng.random()
        if self.weather.calm:
            return None
        for threshold, fault in self._steps:
            if roll < threshold:
                self.counts[fault] += 1
                return fault
        return None


class Reachable(Protocol):
    """A node as its ports see it."""

    name: str
    dead: bool
    partitioned: bool


class Watcher(Protocol):
    """Hears what became of each call through a port."""

    def landed(self, node: Reachable, name: str, args: tuple[Any, ...], result: Any) -> None:
        """The call did its work (committed), before its answer travels back."""

    def lost(self, node: Reachable, name: str, args: tuple[Any, ...], result: Any) -> None:
        """The call had committed, and its answer never reached the node."""

    def failed(self, node: Reachable, name: str, args: tuple[Any, ...]) -> None:
        """The call did nothing (refused, timed out or cancelled before its commit)."""


class Proxy:
    """Stands for a port: each async method of the target, with faults."""


def ported(
    target: object,
    node: Reachable,
    faults: Faults,
    trace: Callable[..., None],
    watcher: Watcher,
) -> Any:
    """``target`` behind the database's faults, as ``node`` reaches it."""
    proxy = Proxy()
    way = _Way(node, faults)
    for name in dir(type(target)):
        if name.startswith("_"):
            continue
        attribute = getattr(target, name)
        if inspect.iscoroutinefunction(attribute):
            setattr(proxy, name, _faulty(name, attribute, way, trace, watcher))
    return proxy


def _unreachable(node: Reachable) -> DatabaseUnavailable:
    return DatabaseUnavailable(f"database sim://shared is not reachable from {node.name}")


class _Way:
    """The way between a node and the database, both ways."""

    def __init__(self, node: Reachable, faults: Faults) -> None:
        self.node = node
        self.faults = faults

    async def there(self, fault: Fault | None) -> None:
        """The way to the database: refused, delayed, or through."""
        node, rng, rates = self.node, self.faults.rng, self.faults.rates
        if node.partitioned:
            await asyncio.sleep(rng.uniform(*CONNECT_TIMEOUT_S))
            raise _unreachable(node)
        if fault is Fault.DELAY:
            await asyncio.sleep(rng.uniform(0, rates.delay_s))
        else:
            await asyncio.sleep(0)
            if fault is Fault.YIELD:
                for _ in range(rng.randint(1, 4)):
                    await asyncio.sleep(0)
        if fault is Fault.FAIL:
            raise DatabaseUnavailable("database sim://shared refused the call before its commit")
        if fault is Fault.TIMEOUT and rng.random() < 0.5:
            await asyncio.sleep(rates.timeout_s)
            raise DatabaseUnavailable("database sim://shared timed out before its commit")
        if node.partitioned:  # it began while the call was on its way
            raise _unreachable(node)

    async def back(self, fault: Fault | None) -> None:
        """The way back: the answer lost, late, or on time."""
        rng, rates = self.faults.rng, self.faults.rates
        if fault is Fault.LOSE:
            await asyncio.sleep(0)
            raise DatabaseUnavailable("the connection to sim://shared broke: its commit landed")
        if fault is Fault.TIMEOUT:
            await asyncio.sleep(rates.timeout_s)
            raise DatabaseUnavailable("database sim://shared timed out after its commit")
        await asyncio.sleep(rng.uniform(0, rates.slow_s) if fault is Fault.SLOW else 0)
        if self.node.partitioned:
            raise DatabaseUnavailable("the answer from sim://shared was lost in a partition")


def _faulty(
    name: str,
    method: Callable[..., Awaitable[Any]],
    way: _Way,
    trace: Callable[..., None],
    watcher: Watcher,
) -> Callable[..., Awaitable[Any]]:
    node, faults = way.node, way.faults

    async def call(*args: Any, **kwargs: Any) -> Any:
        if node.dead:
            raise asyncio.CancelledError
        fault = faults.draw()
        trace(node.name, "db", name, fault or "-", log_fields().get("run", "-"))
        try:
            await way.there(fault)
        except BaseException:
            watcher.failed(node, name, args)
            raise
        try:
            result = await method(*args, **kwargs)
        except Exception:
            await asyncio.sleep(0)  # a refusal travels back too
            raise
        watcher.landed(node, name, args, result)
        try:
            await way.back(fault)
        except BaseException:
            watcher.lost(node, name, args, result)
            raise
        return result

    call.__qualname__ = f"{name} (a call through the simulated database)"
    return call
