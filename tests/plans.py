"""What every plan must satisfy, whoever made it (DESIGN section 6)."""

from __future__ import annotations

from collections.abc import Sequence

from heatup_daemon.config.sections import PlannerSettings
from heatup_daemon.enums import ActionKind
from heatup_daemon.planner.model import PlanContext, PlannedAction


def assert_valid_plan(
    actions: Sequence[PlannedAction], context: PlanContext, bounds: PlannerSettings
) -> None:
    assert 3 <= len(actions) <= 7, actions
    pool = {channel.username for channel in context.pool}
    joined = set(context.joined)
    for action in actions:
        assert isinstance(action.action, ActionKind)
        if action.action == "join_channel":
            assert action.channel in pool and action.channel not in joined, action
            joined.add(action.channel)
            assert action.duration_seconds is None
        elif action.action == "read_messages":
            assert action.channel in joined, action
            assert action.duration_seconds is not None
            assert bounds.read_min_s <= action.duration_seconds <= bounds.read_max_s
        elif action.action == "idle":
            assert action.channel is None and action.duration_seconds is not None
            assert bounds.idle_min_s <= action.duration_seconds <= bounds.idle_max_s
        else:
            assert action.channel is None and action.duration_seconds is None
    if context.joinable:  # a channel may be joined: the ramp and the pace leave room
        assert any(a.action == "join_channel" for a in actions), actions
