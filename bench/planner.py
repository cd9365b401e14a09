"""The built-in planner's cost: plans for a session of a 50-channel pool with 10 channels
joined, timed over many plans (DESIGN: under 1 ms per plan). The LLM's tokens per plan are
``bench.llm``'s.

Run from a checkout: ``.venv/bin/python -m bench.planner``.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime

from bench.common import write_results
from heatup_daemon.config.sections import PlannerSettings
from heatup_daemon.config.settings import Settings
from heatup_daemon.planner.fallback import FallbackPlanner
from heatup_daemon.planner.model import PlanContext
from heatup_daemon.records import PoolChannel

CATEGORIES = ["news", "tech", "science", "business", "music", "sports", "travel", "food"]
PLANS = 20_000


def pool_of(size: int) -> tuple[PoolChannel, ...]:
    shipped = [PoolChannel(c.username, c.category, c.title) for c in Settings().channels]
    extra = [
        PoolChannel(f"{CATEGORIES[i % 8]}_channel_{i:02d}", CATEGORIES[i % 8])
        for i in range(size - len(shipped))
    ]
    return tuple((shipped + extra)[:size])


def context(session: int = 7) -> PlanContext:
    """The plan context of a session of a 50-channel pool that joined 10 of them."""
    pool = pool_of(50)
    return PlanContext(
        session,
        pool,
        frozenset(c.username for c in pool[:10]),
        datetime(2026, 11, 26, 21, 40, tzinfo=UTC),
        (
            "Wed 09:10 succeeded; joined @nasa; read @bbcnews @reuters",
            "Wed 15:02 partial; read @telegram",
            "Thu 08:55 succeeded; joined @python",
        ),
    )


def main() -> None:
    session = context()
    bounds = PlannerSettings()
    planner = FallbackPlanner(bounds, random.Random(1))
    for _ in range(1000):
        planner.actions(session)
    started = time.perf_counter()
    for _ in range(PLANS):
        planner.actions(session)
    per_plan_us = round((time.perf_counter() - started) * 1_000_000 / PLANS, 1)
    print(f"fallback planner: {per_plan_us} us per plan ({PLANS} plans, 50-channel pool)")
    write_results("planner", {"plans": PLANS, "pool_channels": 50, "us_per_plan": per_plan_us})


if __name__ == "__main__":
    main()
