"""A scenario drawn from a seed: the cluster's machines, the sessions and the channel pool,
heatup's settings, how faulty each port is, and the timeline of events.

Everything is decided here, from ``random.Random(seed)``, before the simulation starts: the
same seed is the same scenario. Choices that depend on the moment (which sessions are due
when an API burst comes) are made by the cluster from an event's own seeded generator.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Final

from heatup_daemon.config.sections import (
    CALL_SLACK_S,
    RENEWAL_MARGIN_S,
    ChannelEntry,
    ExecutorSettings,
    GatewaySettings,
    LLMSettings,
    PlannerSettings,
    PoolSettings,
    SchedulerSettings,
    ServiceSettings,
)
from heatup_daemon.config.settings import Settings
from tests.sim.faults import Fault, Rates
from tests.sim.gateway import GatewayRates

# Event kinds that target one machine.
MACHINE_EVENTS: Final = (Fault.CRASH, Fault.STOP, Fault.SKEW, Fault.PARTITION)
SCHEDULES: Final = ("2m", "3m", "4m", "5m", "6m", "8m", "10m", "*/4 * * * *", "*/10 * * * *")
CHANNEL_NAMES: Final = tuple(f"simchan{index:02d}" for index in range(12))
# Every scenario runs 30 simulated minutes, then heals and settles (a crashed node's lease
# runs out, the reaper takes its runs) before every node stops.
DURATION_S: Final = 1800.0
SETTLE_S: Final = 200.0
# Each node's settings, built once per scenario and name (pydantic-settings reads the
# environment at each build).
_SETTINGS: dict[tuple[int, str], Settings] = {}
SETTINGS_KEPT: Final = 64


@dataclass(frozen=True, slots=True)
class SessionPlan:
    gateway_id: int
    schedule: str
    jitter_s: int
    age_days: int
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happens at ``at_s``: to ``machine`` (-1: to the cluster), for
    ``seconds`` (a partition, an outage, a restart's delay, a skew), ``count`` times (an API
    burst's starts, an import's rows); ``flag`` varies it (a restart under another name, a
    synchronous start, an import that skips invalid rows); ``seed`` draws its choices."""

    at_s: float
    kind: Fault
    machine: int = -1
    seconds: float = 0.0
    count: int = 0
    flag: bool = False
    seed: int = 0


@dataclass(frozen=True)
class Scenario:
    seed: int
    duration_s: float
    machines: int
    sessions: tuple[SessionPlan, ...]
    channels: tuple[str, ...]
    private: frozenset[str]
    deleted: frozenset[int]
    time_scale: float
    dispatch_s: float
    reconcile_s: float
    deadline_s: float
    heartbeat_s: float
    stale_s: float  # the lease's length
    stop_timeout_s: float
    pace: int
    budget: int
    breaker_failures: int
    store_rates: Rates
    gateway_rates: Rates
    llm_rates: Rates
    telegram: GatewayRates
    events: tuple[Event, ...] = field(default=())
    settle_s: float = SETTLE_S

    @property
    def end_s(self) -> float:
        return self.duration_s + self.settle_s

    def settings(self, name: str) -> Settings:
        """The configuration of a node named ``name``: the same for every node."""
        settings = _SETTINGS.get((self.seed, name))
        if settings is None:
            settings = _SETTINGS[self.seed, name] = self._settings(name)
            if len(_SETTINGS) > SETTINGS_KEPT:
                del _SETTINGS[next(iter(_SETTINGS))]
        return settings

    def _settings(self, name: str) -> Settings:
        return Settings(
            node_name=name,
            gateway=GatewaySettings(retry_deadline_s=self.deadline_s),
            llm=LLMSettings(
                daily_token_budget=self.budget,
                breaker_failures=self.breaker_failures,
                breaker_cooloff_s=60.0,
            ),
            planner=PlannerSettings(seed=self.seed),
            executor=ExecutorSettings(time_scale=self.time_scale),
            scheduler=SchedulerSettings(
                reconcile_s=self.reconcile_s,
                dispatch_interval_s=self.dispatch_s,
                heartbeat_s=self.heartbeat_s,
                stale_run_s=self.stale_s,
                max_concurrent_runs=50,
            ),
            pool=PoolSettings(max_joins_per_channel_per_hour=self.pace),
            service=ServiceSettings(stop_timeout_s=self.stop_timeout_s),
            channels=tuple(
                ChannelEntry(username=name, title=name, category="sim") for name in self.channels
            ),
        )

    @classmethod
    def drawn(cls, seed: int, duration_s: float | None = None) -> Scenario:
        rng = random.Random(seed)
        duration = duration_s if duration_s is not None else DURATION_S
        machines = rng.choice((2, 2, 3))
        storm = rng.choice((0.3, 0.6, 1.0, 1.0, 1.5))
        sessions = tuple(
            SessionPlan(
                gateway_id=100 + index,
                schedule=rng.choice(SCHEDULES),
                jitter_s=rng.choice((0, 0, 10, 30, 60)),
                age_days=rng.choice((0, 1, 3, 7, 30, 90)),
                enabled=rng.random() > 0.05,
            )
            for index in range(rng.randint(12, 22))
        )
        channels = CHANNEL_NAMES[: rng.randint(5, len(CHANNEL_NAMES))]
        private = frozenset(rng.sample(channels, 1)) if rng.random() < 0.3 else frozenset()
        deleted = frozenset(
            plan.gateway_id for plan in sessions if rng.random() < 0.03
        )  # accounts gone
        deadline_s = rng.choice((15.0, 30.0, 45.0))
        heartbeat_s = rng.choice((10.0, 15.0, 15.0))
        # The shortest lease the configuration accepts, and more: a renewal interval, a
        # gateway call's budget and the margin (``Settings._a_live_lease_covers_a_call``).
        shortest_s = heartbeat_s + deadline_s + CALL_SLACK_S + RENEWAL_MARGIN_S
        stale_s = 120.0 if rng.random() < 0.5 else shortest_s + rng.uniform(2.0, 40.0)
        return cls(
            seed=seed,
            duration_s=duration,
            machines=machines,
            sessions=sessions,
            channels=tuple(channels),
            private=private,
            deleted=deleted,
            time_scale=rng.choice((0.1, 0.25, 0.5, 1.0)),
            dispatch_s=rng.choice((3.0, 5.0, 10.0)),
            reconcile_s=rng.choice((10.0, 20.0, 30.0)),
            deadline_s=deadline_s,
            heartbeat_s=heartbeat_s,
            stale_s=max(stale_s, shortest_s + 1.0),
            stop_timeout_s=rng.choice((5.0, 30.0)),
            pace=rng.randint(2, 8),
            budget=rng.choice((20_000, 60_000, 200_000)),
            breaker_failures=rng.randint(2, 5),
            store_rates=Rates.drawn(rng, storm),
            gateway_rates=Rates.drawn(rng, storm),
            llm_rates=Rates.drawn(rng, storm),
            telegram=GatewayRates(
                flood_p=rng.uniform(0, 0.01) * storm, too_many_p=rng.uniform(0, 0.005) * storm
            ),
            events=_events(rng, duration, machines, storm),
        )


def _events(
    rng: random.Random, duration_s: float, machines: int, storm: float
) -> tuple[Event, ...]:
    timeline = _Timeline(rng, duration_s, storm)
    for machine in range(machines):
        timeline.machine_events(machine)
    timeline.cluster_events(machines)
    timeline.client_events(machines)
    events = timeline.events
    events.sort(key=lambda event: (event.at_s, event.kind, event.machine))
    return tuple(events)


class _Timeline:
    """Events drawn at random moments; ``storm`` scales how many faults come."""

    def __init__(self, rng: random.Random, duration_s: float, storm: float) -> None:
        self.rng = rng
        self.duration_s = duration_s
        self.storm = storm
        self.events: list[Event] = []

    def at(self) -> float:
        return self.rng.uniform(20.0, self.duration_s)

    def count(self, most: float) -> int:
        return self.rng.randint(0, max(round(most * self.storm), 0))

    def add(self, kind: Fault, machine: int, seconds: float = 0.0, **more: Any) -> None:
        self.events.append(Event(self.at(), kind, machine, seconds, **more))

    def machine_events(self, machine: int) -> None:
        """Crashes, clean stops, clock skews and partitions from the database."""
        rng = self.rng
        for _ in range(self.count(2)):
            self.add(Fault.CRASH, machine, rng.uniform(3, 120), flag=_coin(rng))
        for _ in range(self.count(1)):
            self.add(Fault.STOP, machine, rng.uniform(5, 90), flag=_coin(rng))
        for _ in range(self.count(2)):
            skew = rng.choice((-1, 1)) * rng.choice((2.0, 30.0, 300.0, 3600.0))
            self.add(Fault.SKEW, machine, skew)
        for _ in range(self.count(3)):
            long = rng.random() < 0.4
            self.add(
                Fault.PARTITION, machine, rng.uniform(130, 300) if long else rng.uniform(2, 60)
            )

    def cluster_events(self, machines: int) -> None:
        """Outages of the database, and brownouts of the gateway."""
        rng = self.rng
        for _ in range(self.count(2)):
            self.add(Fault.OUTAGE, -1, rng.uniform(2, 90))
        for _ in range(self.count(1.5)):
            machine = rng.randrange(machines)
            seconds = rng.uniform(60, 240)
            self.add(Fault.BROWNOUT, machine, seconds, flag=_coin(rng), seed=_seed(rng))

    def client_events(self, machines: int) -> None:
        """API bursts, console imports, admin edits."""
        rng = self.rng
        for _ in range(rng.randint(3, 10)):
            machine = rng.randrange(machines)
            starts = rng.randint(2, 8)
            self.add(Fault.API_BURST, machine, count=starts, flag=_coin(rng), seed=_seed(rng))
        for _ in range(rng.randint(0, 2)):
            machine = rng.randrange(machines)
            rows = rng.randint(2, 6)
            self.add(Fault.IMPORT, machine, count=rows, flag=_coin(rng), seed=_seed(rng))
        for _ in range(rng.randint(2, 10)):
            self.add(Fault.ADMIN_EDIT, rng.randrange(machines), seed=_seed(rng))


def _coin(rng: random.Random) -> bool:
    return rng.random() < 0.5


def _seed(rng: random.Random) -> int:
    return rng.getrandbits(32)
