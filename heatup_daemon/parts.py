"""Building heatup's working parts from the settings, once per process."""

from __future__ import annotations

import random
from dataclasses import dataclass

from heatup_daemon.clock import Clock
from heatup_daemon.config import Settings
from heatup_daemon.db.repository import Repository
from heatup_daemon.events import Observers, RunLog, RunObserver
from heatup_daemon.executor import Executor
from heatup_daemon.gateway import HttpGateway
from heatup_daemon.metrics import Metrics
from heatup_daemon.planner import Planner
from heatup_daemon.planner.fallback import FallbackPlanner
from heatup_daemon.recording import DurableRecorder
from heatup_daemon.runner import Runner, RunPool


@dataclass(slots=True)
class Parts:
    gateway: HttpGateway
    planner: Planner
    runner: Runner
    pool: RunPool

    async def aclose(self) -> None:
        closing = getattr(self.planner, "aclose", None)
        if closing is not None:
            await closing()
        await self.gateway.aclose()


def build_parts(
    settings: Settings,
    repository: Repository,
    clock: Clock,
    metrics: Metrics,
    *listeners: RunObserver,
) -> Parts:
    """The gateway client, the planner (the built-in one alone when no LLM is configured),
    the executor and the runner, every run event told to the metrics, the log and
    ``listeners``."""
    seed = settings.planner.seed
    observer = Observers(metrics, RunLog(), *listeners)
    recorder = DurableRecorder(repository, clock)
    gateway = HttpGateway(settings.gateway, clock=clock, observe=metrics.gateway_request)
    fallback = FallbackPlanner(settings.planner, random.Random(seed))
    planner: Planner = fallback
    if settings.llm.configured:
        from heatup_daemon.planner.chain import CircuitBreaker, LLMWithFallback
        from heatup_daemon.planner.llm import LLMPlanner

        llm = settings.llm
        planner = LLMWithFallback(
            LLMPlanner(llm, settings.planner, clock, observer=metrics),
            fallback,
            CircuitBreaker(llm.breaker_failures, llm.breaker_cooloff_s, clock),
            repository,
            llm.daily_token_budget,
            clock,
        )
    executor = Executor(
        gateway,
        recorder,
        settings.executor,
        observer,
        clock=clock,
        heartbeat_s=settings.scheduler.heartbeat_seconds,
        rng=random.Random(None if seed is None else seed + 1),
    )
    runner = Runner(
        recorder,
        planner,
        executor,
        observer,
        clock,
        settings.node_name,
        joins=settings.join_policy,
        bounds=settings.planner,
    )
    return Parts(gateway, planner, runner, RunPool(runner))
