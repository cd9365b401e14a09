"""The fallback planner and the validation of LLM answers: whatever comes in, a valid plan
(or a clear refusal) comes out."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heatup_daemon.config.sections import PlannerSettings
from heatup_daemon.planner.chain import CircuitBreaker
from heatup_daemon.planner.fallback import FallbackPlanner
from heatup_daemon.planner.llm import system_prompt, user_prompt
from heatup_daemon.planner.model import PlanContext, PlannedAction
from heatup_daemon.planner.validate import UnusablePlan, actions_of, clamp, validate_actions
from heatup_daemon.records import PoolChannel
from heatup_daemon.testing import FakeClock
from tests.plans import assert_valid_plan

BOUNDS = PlannerSettings()
NOW = datetime(2026, 11, 26, 21, 40, tzinfo=UTC)
CATEGORIES = ["news", "tech", "science", "music", None]

usernames = st.from_regex(r"[a-z][a-z0-9_]{3,12}", fullmatch=True)


@st.composite
def contexts(draw: st.DrawFn) -> PlanContext:
    names = draw(st.lists(usernames, min_size=1, max_size=30, unique=True))
    pool = tuple(PoolChannel(n, draw(st.sampled_from(CATEGORIES))) for n in names)
    joined = frozenset(draw(st.sets(st.sampled_from(names))))
    return PlanContext(7, pool, joined, NOW)


def context(joined: int = 0, size: int = 10) -> PlanContext:
    pool = tuple(PoolChannel(f"chan{i:02d}", CATEGORIES[i % 4]) for i in range(size))
    return PlanContext(7, pool, frozenset(c.username for c in pool[:joined]), NOW)


@given(contexts(), st.integers())
def test_fallback_plans_are_always_valid(ctx: PlanContext, seed: int) -> None:
    actions = FallbackPlanner(BOUNDS, random.Random(seed)).actions(ctx)
    assert_valid_plan(actions, ctx, BOUNDS)


def test_fallback_joins_only_unjoined_and_reads_only_joined() -> None:
    ctx = context(joined=3)
    planner = FallbackPlanner(BOUNDS, random.Random(5))
    for _ in range(200):
        for action in planner.actions(ctx):
            if action.action == "join_channel":
                assert action.channel not in ctx.joined
    everything = context(joined=10)
    for _ in range(200):
        actions = planner.actions(everything)
        assert all(a.action != "join_channel" for a in actions)  # nothing left to join


def test_fallback_varies_across_seeds() -> None:
    ctx = context(joined=4)
    plans = {FallbackPlanner(BOUNDS, random.Random(seed)).actions(ctx) for seed in range(50)}
    assert len(plans) >= 45
    lengths = {len(plan) for plan in plans}
    assert lengths == {3, 4, 5, 6, 7}
    kinds_first = {plan[0].action for plan in plans}
    assert len(kinds_first) >= 3


def test_fallback_is_reproducible_with_a_seed() -> None:
    ctx = context(joined=2)
    first = [FallbackPlanner(BOUNDS, random.Random(9)).actions(ctx) for _ in range(3)]
    assert first[0] == first[1] == first[2]


def test_fallback_reads_vary() -> None:
    ctx = context(joined=5)
    planner = FallbackPlanner(BOUNDS, random.Random(1))
    for _ in range(300):
        reads = [a.channel for a in planner.actions(ctx) if a.action == "read_messages"]
        assert all(a != b for a, b in itertools.pairwise(reads))
        assert all(reads.count(channel) <= 2 for channel in reads)


def test_fallback_with_nothing_joined_joins_early() -> None:
    planner = FallbackPlanner(BOUNDS, random.Random(3))
    for _ in range(100):
        actions = planner.actions(context(joined=0))
        assert "join_channel" in (actions[0].action, actions[1].action)


def llm_item(kind: str, channel: str | None = None, seconds: Any = None) -> dict[str, Any]:
    return {"action": kind, "channel": channel, "duration_seconds": seconds, "reason": "r"}


def test_validation_keeps_good_actions_and_notes_the_rest() -> None:
    ctx = context(joined=2)
    items = [
        llm_item("join_channel", "@chan05"),
        llm_item("read_messages", "@chan05", 1e9),  # clamped
        llm_item("send_message", "@chan00"),  # outside the vocabulary
        llm_item("read_messages", "@notinpool"),
        llm_item("join_channel", "@chan00"),  # joined already
        llm_item("read_messages", "@chan09"),  # not joined
        llm_item("idle", None, -4),  # clamped
        "junk",
        llm_item("browse_dialogs"),
        llm_item("read_messages", "@x'); __import__('os')", 5),
    ]
    validated = validate_actions(items, ctx, BOUNDS)
    actions, notes = validated.actions, validated.notes
    assert [(a.action, a.channel) for a in actions] == [
        ("join_channel", "chan05"),
        ("read_messages", "chan05"),
        ("idle", None),
        ("browse_dialogs", None),
    ]
    assert actions[1].duration_seconds == BOUNDS.read_max_s
    assert actions[2].duration_seconds == BOUNDS.idle_min_s
    assert len(notes) == 6
    assert any("unknown action 'send_message'" in note for note in notes)
    assert any("not an enabled pool channel" in note for note in notes)


def test_validation_adds_a_join_when_unjoined_channels_remain() -> None:
    ctx = context(joined=2)
    items = [
        llm_item("browse_dialogs"),
        llm_item("read_messages", "@chan00", 10),
        llm_item("idle", None, 10),
    ]
    validated = validate_actions(items, ctx, BOUNDS)
    actions, notes = validated.actions, validated.notes
    assert actions[0].action == "join_channel" and actions[0].channel not in ctx.joined
    assert "added a join" in notes[-1]


def test_validation_truncates_and_refuses() -> None:
    ctx = context(joined=10)
    many = [llm_item("browse_dialogs"), llm_item("idle", None, 9)] * 6
    validated = validate_actions(many, ctx, BOUNDS)
    actions, notes = validated.actions, validated.notes
    assert len(actions) == 7 and "5 actions beyond 7 dropped" in notes[-1]
    with pytest.raises(UnusablePlan, match="only 2 usable actions"):
        validate_actions(many[:2], ctx, BOUNDS)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not JSON"),
        ("[", "not JSON"),
        ('{"plan": 1}', "no list of actions"),
        ("42", "no list of actions"),
        ("[" * 5000 + "]" * 5000, "not JSON"),
    ],
)
def test_answers_without_actions(text: str, message: str) -> None:
    with pytest.raises(UnusablePlan, match=message):
        actions_of(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
near_valid = st.fixed_dictionaries(
    {
        "action": st.sampled_from(
            ["join_channel", "read_messages", "browse_dialogs", "idle", "react", "", None]
        ),
        "channel": st.one_of(
            st.none(), st.sampled_from([f"@chan{i:02d}" for i in range(12)]), st.text(max_size=40)
        ),
        "duration_seconds": st.one_of(
            st.none(),
            st.floats(allow_nan=True, allow_infinity=True),
            st.integers(),
            st.text(max_size=5),
        ),
        "reason": st.one_of(st.none(), st.text(max_size=300)),
    }
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(max_size=200),
        json_values.map(json.dumps),
        st.lists(st.one_of(near_valid, json_values), max_size=25).map(
            lambda items: json.dumps({"actions": items})
        ),
    ),
    st.integers(min_value=0, max_value=10),
)
def test_any_llm_answer_gives_a_valid_plan_or_a_refusal(text: str, joined: int) -> None:
    ctx = context(joined=joined)
    try:
        actions = validate_actions(actions_of(text), ctx, BOUNDS).actions
    except UnusablePlan:
        return  # the planner uses the fallback
    assert_valid_plan(actions, ctx, BOUNDS)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (10, 10.0),
        (1, 5.0),
        (1000, 45.0),
        (None, 25.0),
        ("7", 25.0),
        (True, 25.0),
        (float("nan"), 25.0),
        (float("inf"), 25.0),
        (12.345, 12.3),
    ],
)
def test_clamp(value: Any, expected: float) -> None:
    assert clamp(value, 5.0, 45.0) == expected


def test_circuit_breaker_lets_exactly_one_trial_through_when_half_open() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures=3, cooloff_s=60, clock=clock)
    for _ in range(2):
        assert breaker.acquire()
        breaker.failure()
    assert breaker.acquire()  # closed: two failures are under the threshold
    breaker.failure()
    assert not breaker.acquire()  # the third opened it
    clock.advance(59)
    assert not breaker.acquire()
    clock.advance(2)
    assert breaker.acquire()  # half-open: this caller is the one trial ...
    assert not breaker.acquire() and not breaker.acquire()  # ... and everyone else waits
    breaker.failure()
    assert not breaker.acquire()  # the trial failed: open again for a whole cooloff
    clock.advance(61)
    assert breaker.acquire()
    breaker.success()
    assert breaker.acquire() and breaker.acquire() and breaker.consecutive_failures == 0


def test_a_cancelled_trial_lets_another_caller_try() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures=1, cooloff_s=10, clock=clock)
    breaker.failure()
    clock.advance(11)
    assert breaker.acquire()
    breaker.release()  # the trial's run was cancelled before the LLM answered
    assert breaker.acquire()


def test_prompt_carries_the_context() -> None:
    ctx = PlanContext(
        7,
        (PoolChannel("bbcnews", "news"), PoolChannel("nasa", "science")),
        frozenset({"nasa"}),
        NOW,
        ("Wed 09:00 succeeded; read @nasa",),
    )
    text = user_prompt(ctx)
    assert "Thursday 21:40" in text
    assert "news: @bbcnews" in text and "science: @nasa*" in text
    assert "Wed 09:00 succeeded; read @nasa" in text
    assert "5-45 s" in system_prompt(BOUNDS) and "JSON" in system_prompt(BOUNDS)


@st.composite
def limited_contexts(draw: st.DrawFn) -> PlanContext:
    """Any pool and history, an account of any age (its allowance) and channels with any
    room left this hour."""
    base = draw(contexts())
    allowance = draw(st.integers(0, 3))
    room = {c.username: draw(st.integers(0, 2)) for c in base.pool}
    return replace(base, join_allowance=allowance, channel_room=room, room_per_channel=2)


def assert_within_limits(actions: Sequence[PlannedAction], ctx: PlanContext) -> None:
    joins = [a.channel for a in actions if a.action == "join_channel"]
    assert len(joins) <= ctx.join_allowance, (joins, ctx.join_allowance)
    for channel in set(joins):
        assert channel is not None and joins.count(channel) <= ctx.room(channel), channel


@given(limited_contexts(), st.integers())
def test_no_fallback_plan_exceeds_the_ramp_or_the_pace(ctx: PlanContext, seed: int) -> None:
    actions = FallbackPlanner(BOUNDS, random.Random(seed)).actions(ctx)
    assert_valid_plan(actions, ctx, BOUNDS)
    assert_within_limits(actions, ctx)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(limited_contexts(), st.lists(near_valid, max_size=12))
def test_no_llm_answer_exceeds_the_ramp_or_the_pace(
    ctx: PlanContext, items: list[dict[str, Any]]
) -> None:
    names = [c.username for c in ctx.pool]
    answer = [
        {**item, "channel": f"@{names[i % len(names)]}"} if i % 2 else item
        for i, item in enumerate(items)
    ]
    try:
        validated = validate_actions(answer, ctx, BOUNDS)
    except UnusablePlan:
        return
    assert_within_limits(validated.actions, ctx)
    dropped = dict(validated.joins_dropped)
    assert set(dropped) <= {"ramp", "channel_pace"}


def test_an_account_out_of_joins_still_reads_browses_and_idles() -> None:
    ctx = replace(context(joined=3), join_allowance=0)
    for seed in range(50):
        actions = FallbackPlanner(BOUNDS, random.Random(seed)).actions(ctx)
        assert 3 <= len(actions) <= 7 and "join_channel" not in {a.action for a in actions}
    items = [llm_item("join_channel", "@chan05"), llm_item("browse_dialogs")] * 3
    validated = validate_actions(items, ctx, BOUNDS)
    assert dict(validated.joins_dropped) == {"ramp": 3}
    assert any("allowance" in note for note in validated.notes)


def test_the_prompt_tells_the_allowance_and_full_channels() -> None:
    ctx = replace(context(joined=1), join_allowance=1, channel_room={"chan02": 0})
    text = user_prompt(ctx)
    assert "Joins allowed in this plan: 1." in text and "@chan02!" in text
