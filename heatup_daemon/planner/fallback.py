"""The built-in planner: varied, valid, pool-only plans without an LLM.

Used when no LLM is configured, when it fails or answers junk, when the daily token budget
is spent and while the circuit breaker is open. Its plans meet the same rules as validated
LLM plans (3-7 actions, joins only of unjoined pool channels, reads only of joined ones,
durations within bounds, at least one join while unjoined channels remain) and vary from
run to run: length, order, channels and categories are drawn from the injected RNG.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Final

from heatup_daemon.config.sections import PlannerSettings
from heatup_daemon.enums import ActionKind, PlanSource
from heatup_daemon.planner.model import (
    MAX_ACTIONS,
    MIN_ACTIONS,
    Plan,
    PlanContext,
    PlannedAction,
    step,
)
from heatup_daemon.records import PoolChannel

# Relative weight of each kind for the steps that are not joins.
_KIND_WEIGHTS: Final = (
    (ActionKind.READ_MESSAGES, 5),
    (ActionKind.BROWSE_DIALOGS, 2),
    (ActionKind.IDLE, 2),
)
NO_LLM: Final = "no LLM configured"
_SECOND_JOIN_CHANCE: Final = 0.3
# Per plan: browse or idle at most twice; read one channel at most twice, never back to back.
_MAX_SAME_KIND: Final = 2
_MAX_READS_PER_CHANNEL: Final = 2


class FallbackPlanner:
    """A ``Planner`` on its own (when no LLM is configured) and the fallback of
    ``LLMWithFallback``."""

    def __init__(self, bounds: PlannerSettings, rng: random.Random | None = None) -> None:
        self._bounds = bounds
        self._rng = rng or random.Random(bounds.seed)

    async def plan(self, context: PlanContext) -> Plan:
        return self.plan_now(context, NO_LLM)

    def plan_now(self, context: PlanContext, reason: str) -> Plan:
        """A plan for ``context``; ``reason`` says why the fallback plans this run."""
        return Plan(self.actions(context), PlanSource.FALLBACK, fallback_reason=reason)

    def actions(self, context: PlanContext) -> tuple[PlannedAction, ...]:
        rng = self._rng
        count = rng.randint(MIN_ACTIONS, MAX_ACTIONS)
        joined = [c for c in context.pool if c.username in context.joined]
        to_join = self._joins(context, joined)
        join_slots = set(rng.sample(range(count), len(to_join)))
        if to_join and not joined:
            # Nothing to read yet: join early so that the rest of the plan can read.
            join_slots.discard(max(join_slots))
            join_slots.add(min(rng.choice((0, 1)), min(join_slots, default=count)))
        actions: list[PlannedAction] = []
        for slot in range(count):
            if slot in join_slots:
                channel = to_join.pop(0)
                joined.append(channel)
                actions.append(
                    step(ActionKind.JOIN_CHANNEL, channel.username, None, _about(channel))
                )
            else:
                actions.append(self._other(joined, actions))
        return tuple(actions)

    def _joins(self, context: PlanContext, joined: list[PoolChannel]) -> list[PoolChannel]:
        """One or two channels the session may join now (its allowance and the channels'
        room permitting), preferring categories it lacks and channels with room to spare."""
        joinable = list(context.joinable)
        if not joinable:
            return []
        wanted = 1 + (len(joinable) > 1 and self._rng.random() < _SECOND_JOIN_CHANCE)
        wanted = min(wanted, context.join_allowance)
        have = Counter(c.category for c in joined)
        picks: list[PoolChannel] = []
        for _ in range(wanted):
            weights = [context.room(c.username) / (1 + have[c.category]) for c in joinable]
            choice = self._rng.choices(joinable, weights)[0]
            joinable.remove(choice)
            have[choice.category] += 1
            picks.append(choice)
        return picks

    def _other(self, joined: list[PoolChannel], so_far: list[PlannedAction]) -> PlannedAction:
        rng = self._rng
        readable = self._readable(joined, so_far)
        previous = so_far[-1].action if so_far else None
        done: Counter[ActionKind] = Counter(a.action for a in so_far)
        kinds: list[tuple[ActionKind, int]] = []
        for kind, weight in _KIND_WEIGHTS:
            if kind is ActionKind.READ_MESSAGES:
                usable = bool(readable)  # limited per channel instead
            else:
                usable = kind is not previous and done[kind] < _MAX_SAME_KIND
            if usable:
                kinds.append((kind, weight))
        kinds = kinds or [(ActionKind.IDLE, 1)]
        kind = rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
        bounds = self._bounds
        if kind is ActionKind.READ_MESSAGES:
            channel = rng.choice(readable)
            duration = round(rng.uniform(bounds.read_min_s, bounds.read_max_s), 1)
            return step(kind, channel.username, duration, f"catch up on {_name(channel)}")
        if kind is ActionKind.IDLE:
            duration = round(rng.uniform(bounds.idle_min_s, bounds.idle_max_s), 1)
            return step(kind, None, duration, "a short break")
        return step(ActionKind.BROWSE_DIALOGS, None, None, "look through the chat list")

    @staticmethod
    def _readable(joined: list[PoolChannel], so_far: list[PlannedAction]) -> list[PoolChannel]:
        """Joined channels this plan may read next: unread ones if any, else ones read less
        than the limit, and never the channel read just before."""
        reads = Counter(a.channel for a in so_far if a.action is ActionKind.READ_MESSAGES)
        last = (
            so_far[-1].channel if so_far and so_far[-1].action is ActionKind.READ_MESSAGES else None
        )
        allowed = [
            c for c in joined if reads[c.username] < _MAX_READS_PER_CHANNEL and c.username != last
        ]
        fresh = [c for c in allowed if not reads[c.username]]
        return fresh or allowed


def _name(channel: PoolChannel) -> str:
    return channel.title or f"@{channel.username}"


def _about(channel: PoolChannel) -> str:
    return f"follow {_name(channel)}" + (f" ({channel.category})" if channel.category else "")
