"""Building heatup's working parts from the settings, once per process."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from heatup_daemon.config.settings import Settings
from heatup_daemon.db import dialect
from heatup_daemon.gateway import Gateway, HttpGateway
from heatup_daemon.lease import NodeLease
from heatup_daemon.metrics import Metrics
from heatup_daemon.planner import Planner
from heatup_daemon.planner.fallback import FallbackPlanner
from heatup_daemon.run.durable import DurableRecorder
from heatup_daemon.run.events import Observers, RunLog, RunObserver
from heatup_daemon.run.executor import Executor
from heatup_daemon.run.runner import InFlight, Runner
from heatup_daemon.stores import LeaseStore, RunRecorder, TokenLedger
from heatup_daemon.timing.clock import Clock, DatabaseClock, SystemClock


class PartsStore(RunRecorder, TokenLedger, LeaseStore, Protocol):
    """What the working parts ask of the database."""


@dataclass(slots=True)
class Parts:
    gateway: Gateway
    planner: Planner
    runner: Runner
    in_flight: InFlight

    async def aclose(self) -> None:
        closing = getattr(self.planner, "aclose", None)
        if closing is not None:
            await closing()
        await self.gateway.aclose()


def node_lease(
    settings: Settings,
    repository: PartsStore,
    metrics: Metrics | None = None,
    *,
    name: str | None = None,
) -> NodeLease:
    """This process's lease (not yet acquired) under ``name`` (``node_name`` by default),
    and with it the clock the process keeps: the database's on PostgreSQL
    (``DatabaseClock``), the host's on SQLite (one host)."""
    on_database_clock = dialect.on_database_clock(dialect.name_of(settings.database.url))
    database_clock = DatabaseClock() if on_database_clock else None
    return NodeLease(
        repository,
        name or settings.node_name,
        settings.scheduler,
        clock=database_clock or SystemClock(),
        database_clock=database_clock,
        observer=metrics,
    )


def build_parts(
    settings: Settings,
    repository: PartsStore,
    clock: Clock,
    metrics: Metrics,
    lease: NodeLease,
    *listeners: RunObserver,
    gateway: Gateway | None = None,
    planner: Planner | None = None,
    on_fatal: Callable[[BaseException], None] = lambda exc: None,
) -> Parts:
    """The gateway client, the planner (the built-in one alone when no LLM is configured),
    the executor and the runner of the node that holds ``lease``, every run event told to
    the metrics, the log and ``listeners``. ``gateway`` and ``planner`` replace the ones
    the settings describe (tests give scripted ones); ``on_fatal`` hears of runs failing of
    a defect for a minute (``fatal.FatalRule``)."""
    seed = settings.planner.seed
    observer = Observers(metrics, RunLog(), *listeners)
    cut_short = asyncio.Event()  # a stop ran out of time: writes stop waiting out an outage
    recorder = DurableRecorder(repository, clock, cut_short)
    if gateway is None:
        gateway = HttpGateway(settings.gateway, clock=clock, observe=metrics.gateway_request)
    if planner is None:
        planner = _planner(settings, repository, clock, metrics)
    executor = Executor(
        gateway,
        recorder,
        settings.executor,
        observer,
        clock=clock,
        call_budget_s=settings.call_budget_s,
        renew_lease=lease.renew,
        rng=random.Random(None if seed is None else seed + 1),
    )
    runner = Runner(
        recorder,
        planner,
        executor,
        observer,
        clock,
        lease,
        joins=settings.join_policy,
        bounds=settings.planner,
        on_fatal=on_fatal,
        store=repository,
        cut_short=cut_short,
    )
    return Parts(gateway, planner, runner, InFlight(runner))


def _planner(settings: Settings, repository: PartsStore, clock: Clock, metrics: Metrics) -> Planner:
    """The built-in planner, behind the LLM when one is configured."""
    fallback = FallbackPlanner(settings.planner, random.Random(settings.planner.seed))
    if not settings.llm.configured:
        return fallback
    from heatup_daemon.planner.chain import CircuitBreaker, LLMWithFallback
    from heatup_daemon.planner.llm import LLMPlanner

    llm = settings.llm
    return LLMWithFallback(
        LLMPlanner(llm, settings.planner, clock, observer=metrics),
        fallback,
        CircuitBreaker(llm.breaker_failures, llm.breaker_cooloff_s, clock),
        repository,
        llm.daily_token_budget,
        clock,
    )
