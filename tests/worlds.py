"""heatup's working parts for tests, wired as the daemon wires them (``parts.build_parts``),
on a store (the in-memory one or a real repository), a fake clock and a scripted gateway.
A ``World`` holds one node or several sharing the store and the clock, as a cluster does."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from heatup_daemon.config.sections import ExecutorSettings, GatewaySettings, PlannerSettings
from heatup_daemon.config.settings import Settings
from heatup_daemon.lease import NodeLease
from heatup_daemon.metrics import Metrics
from heatup_daemon.planner import Planner
from heatup_daemon.run.runner import InFlight, Runner
from heatup_daemon.scheduling.scheduler import Scheduler
from heatup_daemon.session import SessionRecord
from heatup_daemon.stores import NodeStore, SlotPolicy
from heatup_daemon.testing import FakeClock, FakeGateway
from heatup_daemon.wiring import build_parts
from tests.builders import session_spec

START = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def quick_settings(**scheduler: Any) -> Settings:
    """heatup's defaults with no waits (time scale 0) and a seeded planner, with these
    scheduler settings; the gateway's deadline is short, so that a short
    ``stale_run_s`` still covers a call."""
    return Settings(
        executor=ExecutorSettings(time_scale=0),
        planner=PlannerSettings(seed=1),
        gateway=GatewaySettings(read_timeout_s=1, retry_deadline_s=2),
        scheduler=scheduler,
    )


class WorldNode:
    """One node: its lease, its parts and its scheduler (``World.node`` builds one)."""

    def __init__(
        self,
        world: World,
        name: str,
        *,
        planner: Planner | None = None,
        policy: SlotPolicy | None = None,
    ) -> None:
        settings = world.settings
        self.metrics = Metrics()
        self.fatal: list[BaseException] = []
        self.lease = NodeLease(
            world.store,
            name,
            settings.scheduler,
            clock=world.clock,
        )
        self.parts = build_parts(
            settings,
            world.store,
            world.clock,
            self.metrics,
            self.lease,
            gateway=world.gateway,
            planner=planner,
            on_fatal=self.fatal.append,
        )
        self.runner: Runner = self.parts.runner
        self.in_flight: InFlight = self.parts.in_flight
        self.scheduler = Scheduler(
            settings.scheduler,
            settings.history,
            world.store,
            self.in_flight,
            self.metrics,
            world.clock,
            self.lease,
            ramp=settings.ramp.ramp,
            rng=random.Random(7),
            policy=policy,
            on_fatal=self.fatal.append,
        )

    def sample(self, name: str, **labels: str) -> float:
        """A metric's value (0 when the series does not exist)."""
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


class World:
    def __init__(
        self,
        store: NodeStore,
        *,
        settings: Settings | None = None,
        gateway: FakeGateway | None = None,
        clock: FakeClock | None = None,
    ) -> None:
        self.store = store
        self.settings = settings or quick_settings()
        self.gateway = gateway or FakeGateway()
        self.clock = clock or FakeClock(START)
        self.nodes: list[WorldNode] = []

    async def node(
        self,
        name: str = "n1",
        *,
        planner: Planner | None = None,
        policy: SlotPolicy | None = None,
    ) -> WorldNode:
        """A new node whose lease is acquired (a restarted daemon is a new node)."""
        node = WorldNode(self, name, planner=planner, policy=policy)
        await node.lease.acquire()
        self.nodes.append(node)
        return node

    async def add(self, gateway_id: int, schedule: str = "1h", jitter: int = 0) -> SessionRecord:
        return await self.store.add_session(
            session_spec(gateway_id, schedule, jitter_seconds=jitter)
        )

    async def settle(self) -> None:
        """Until every run of every node has ended."""
        for node in self.nodes:
            await node.in_flight.wait_all()

    async def tick(self, node: WorldNode | None = None) -> int:
        """One dispatch pass (of the newest node, by default), then until its runs ended."""
        started = await (node or self.nodes[-1]).scheduler.dispatch()
        await self.settle()
        return started

    # The newest node's parts, for tests of one node.

    @property
    def scheduler(self) -> Scheduler:
        return self.nodes[-1].scheduler

    @property
    def in_flight(self) -> InFlight:
        return self.nodes[-1].in_flight

    @property
    def fatal(self) -> list[BaseException]:
        return self.nodes[-1].fatal

    def sample(self, name: str, **labels: str) -> float:
        return self.nodes[-1].sample(name, **labels)
