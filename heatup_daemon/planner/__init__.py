"""Planning a run: the ``Planner`` protocol. The built-in planner is in ``planner.fallback``,
the LLM planner in ``planner.llm`` (it loads the openai SDK, so it is imported only where it
is used), their composite in ``planner.chain``, the plan types in ``planner.model``, and the
context a planner is given in ``planner.context``."""

from __future__ import annotations

from typing import Protocol

from heatup_daemon.planner.model import Plan, PlanContext


class Planner(Protocol):
    """Makes the plan of one run: 3 to 7 valid actions for the session ``context``
    describes. An LLM planner raises ``PlannerUnavailable`` when it cannot; the daemon's
    planners (the built-in one, or ``LLMWithFallback``) always return a plan."""

    async def plan(self, context: PlanContext) -> Plan: ...
