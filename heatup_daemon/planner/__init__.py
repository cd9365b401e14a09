"""Planning a run: the ``Planner`` protocol. The LLM planner is in ``planner.llm`` (it loads
the openai SDK, so it is imported only where it is used), the built-in one in
``planner.fallback``, the plan types in ``planner.model``."""

from __future__ import annotations

from typing import Protocol

from heatup_daemon.planner.model import Plan, PlanContext


class Planner(Protocol):
    """Makes the plan of one run. Never raises for an LLM problem: it plans with the
    fallback instead and says why in ``Plan.fallback_reason``."""

    async def plan(self, context: PlanContext) -> Plan:
        """3 to 7 valid actions for the session described by ``context``."""
