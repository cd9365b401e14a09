"""Turning whatever an LLM answered into a valid plan, or deciding it leaves too little.

Rules (DESIGN section 6): unknown actions are dropped; channels must be enabled pool
channels; a join names a channel not joined yet, a read one already joined (or joined
earlier in the same plan); joins stay within the account's allowance and the channels'
room this hour (``ramp``); durations are clamped to the configured bounds; at most
``MAX_ACTIONS`` are kept; a plan with fewer than ``MIN_ACTIONS`` usable actions is refused;
a plan without a join while a channel may be joined gets one.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any, Final

from heatup_daemon.config.sections import PlannerSettings
from heatup_daemon.enums import ActionKind, JoinRefusal
from heatup_daemon.errors import InvalidValue
from heatup_daemon.planner.model import (
    MAX_ACTIONS,
    MAX_REASON_LENGTH,
    MIN_ACTIONS,
    PlanContext,
    PlannedAction,
    step,
)
from heatup_daemon.validation import handle, parse_username

_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f]+")


class UnusablePlan(ValueError):
    """The answer leaves too little to run; the message says why."""


def actions_of(text: str) -> list[Any]:
    """The list of action objects in an LLM's JSON text (``{"actions": [...]}`` or a bare
    list); raise ``UnusablePlan`` if there is none."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise UnusablePlan("the answer is not JSON") from None
    if isinstance(data, dict):
        data = data.get("actions", data.get("action_plan"))
    if not isinstance(data, list):
        raise UnusablePlan("the answer has no list of actions")
    return data


@dataclass(frozen=True, slots=True)
class Validated:
    """The usable actions, a note for each one dropped or changed, and the joins taken out
    to look after the account, by reason (``ramp``, ``channel_pace``)."""

    actions: tuple[PlannedAction, ...]
    notes: tuple[str, ...]
    joins_dropped: tuple[tuple[JoinRefusal, int], ...] = ()


def validate_actions(items: list[Any], context: PlanContext, bounds: PlannerSettings) -> Validated:
    """Keep what is usable of ``items``; raise ``UnusablePlan`` when fewer than
    ``MIN_ACTIONS`` remain. Joins beyond the context's allowance, or of a channel without
    room this hour, are dropped (and a read of a channel whose join was dropped with them)."""
    pool = {channel.username for channel in context.pool}
    joined = set(context.joined) & pool
    actions: list[PlannedAction] = []
    notes: list[str] = []
    dropped: Counter[JoinRefusal] = Counter()
    for index, item in enumerate(items[: MAX_ACTIONS * 3]):
        try:
            action = _action(item, pool, joined, bounds)
            if action.action is ActionKind.JOIN_CHANNEL:
                _may_join(action, actions, context, dropped)
        except InvalidValue as exc:
            notes.append(f"action {index + 1} dropped: {exc}")
            continue
        if action.action is ActionKind.JOIN_CHANNEL and action.channel:
            joined.add(action.channel)
        actions.append(action)
    if len(items) > MAX_ACTIONS * 3:
        notes.append(
            f"{len(items) - MAX_ACTIONS * 3} actions beyond the first {MAX_ACTIONS * 3} ignored"
        )
    if len(actions) > MAX_ACTIONS:
        notes.append(f"{len(actions) - MAX_ACTIONS} actions beyond {MAX_ACTIONS} dropped")
        actions = actions[:MAX_ACTIONS]
    if len(actions) < MIN_ACTIONS:
        raise UnusablePlan(f"only {len(actions)} usable actions; at least {MIN_ACTIONS} needed")
    if context.joinable and not any(a.action is ActionKind.JOIN_CHANNEL for a in actions):
        channel = _first_unplanned(context, actions)
        actions = [
            step(ActionKind.JOIN_CHANNEL, channel, None, "new channel from the pool"),
            *actions,
        ]
        actions = actions[:MAX_ACTIONS]
        notes.append(f"added a join of {handle(channel)}: unjoined pool channels remain")
    return Validated(tuple(actions), tuple(notes), tuple(sorted(dropped.items())))


def _may_join(
    action: PlannedAction,
    so_far: list[PlannedAction],
    context: PlanContext,
    dropped: Counter[JoinRefusal],
) -> None:
    """Raise ``InvalidValue`` (and count why) if the plan may not hold this join."""
    assert action.channel is not None
    joins = [a.channel for a in so_far if a.action is ActionKind.JOIN_CHANNEL]
    if len(joins) >= context.join_allowance:
        dropped[JoinRefusal.RAMP] += 1
        raise InvalidValue(
            f"join of {handle(action.channel)} beyond the account's allowance of "
            f"{context.join_allowance} joins now (its age's daily limit)"
        )
    if context.room(action.channel) <= 0:
        dropped[JoinRefusal.CHANNEL_PACE] += 1
        raise InvalidValue(f"{handle(action.channel)} has had its joins from the pool this hour")


def _action(item: Any, pool: set[str], joined: set[str], bounds: PlannerSettings) -> PlannedAction:
    if not isinstance(item, dict):
        raise InvalidValue("not an object")
    raw = item.get("action")
    try:
        kind = ActionKind(raw) if isinstance(raw, str) else None
    except ValueError:
        kind = None
    if kind is None:
        raise InvalidValue(f"unknown action {str(raw)[:40]!r}")
    reason = _reason(item.get("reason"))
    channel = None
    if kind.names_channel:
        channel = parse_username(item.get("channel", item.get("channel_username")))
        if channel not in pool:
            raise InvalidValue(f"{handle(channel)} is not an enabled pool channel")
        if kind is ActionKind.JOIN_CHANNEL and channel in joined:
            raise InvalidValue(f"{handle(channel)} is joined already")
        if kind is ActionKind.READ_MESSAGES and channel not in joined:
            raise InvalidValue(f"{handle(channel)} is not joined, so it cannot be read")
    duration = None
    if kind is ActionKind.READ_MESSAGES:
        duration = clamp(item.get("duration_seconds"), bounds.read_min_s, bounds.read_max_s)
    elif kind is ActionKind.IDLE:
        duration = clamp(item.get("duration_seconds"), bounds.idle_min_s, bounds.idle_max_s)
    return step(kind, channel, duration, reason)


def clamp(value: Any, low: float, high: float) -> float:
    """``value`` within [low, high]; the middle when it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return round((low + high) / 2, 1)
    return round(min(max(float(value), low), high), 1)


def _reason(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    text = _CONTROL_RE.sub(" ", value).strip()
    return text[:MAX_REASON_LENGTH]


def _first_unplanned(context: PlanContext, actions: list[PlannedAction]) -> str:
    planned = {a.channel for a in actions}
    for channel in context.joinable:
        if channel.username not in planned:
            return channel.username
    return context.joinable[0].username


def narrowed(
    actions: tuple[PlannedAction, ...],
    granted: set[str],
    context: PlanContext,
    bounds: PlannerSettings,
) -> Validated:
    """A plan's actions with only the joins in ``granted`` (the ledger refused the others:
    another node took the place meanwhile), reads of channels it could not join taken out
    with them, and short breaks added if fewer than ``MIN_ACTIONS`` remain."""
    only_granted = replace(
        context,
        join_allowance=len(granted),
        channel_room={channel: 1 if channel in granted else 0 for channel in _joins(actions)},
        room_per_channel=0,
    )
    items = [action.model_dump(mode="json") for action in actions]
    try:
        return validate_actions(items, only_granted, bounds)
    except UnusablePlan:
        pass
    kept = [a for a in actions if a.action in (ActionKind.BROWSE_DIALOGS, ActionKind.IDLE)]
    while len(kept) < MIN_ACTIONS:
        kept.append(step(ActionKind.IDLE, None, clamp(None, bounds.idle_min_s, bounds.idle_max_s)))
    return Validated(tuple(kept), ("the plan's joins were refused: it only idles and browses",))


def _joins(actions: tuple[PlannedAction, ...]) -> list[str]:
    return [a.channel for a in actions if a.action is ActionKind.JOIN_CHANNEL and a.channel]
