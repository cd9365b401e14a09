"""Building heatup's working parts from the settings, once per process."""

from __future__ import annotations

import random
from dataclasses import dataclass

from heatup_daemon import metrics
from heatup_daemon.clock import Clock
from heatup_daemon.config import Settings
from heatup_daemon.db.repository import Repository
from heatup_daemon.executor import Executor
from heatup_daemon.gateway import HttpGateway
from heatup_daemon.planner.fallback import FallbackPlanner
from heatup_daemon.planner.llm import LLMPlanner
from heatup_daemon.runner import Runner


@dataclass(slots=True)
class Parts:
    gateway: HttpGateway
    planner: LLMPlanner
    executor: Executor
    runner: Runner

    async def aclose(self) -> None:
        await self.planner.aclose()
        await self.gateway.aclose()


def build_parts(settings: Settings, repository: Repository, clock: Clock) -> Parts:
    seed = settings.planner.seed
    gateway = HttpGateway(settings.gateway, clock=clock, observe=metrics.observe_gateway)
    fallback = FallbackPlanner(settings.planner, random.Random(seed))
    planner = LLMPlanner(settings.llm, settings.planner, fallback, clock)
    executor = Executor(
        gateway,
        repository,
        settings.executor,
        clock=clock,
        heartbeat_s=settings.scheduler.heartbeat_seconds,
        rng=random.Random(None if seed is None else seed + 1),
    )
    runner = Runner(repository, planner, executor, clock, settings.node_name)
    return Parts(gateway, planner, executor, runner)
