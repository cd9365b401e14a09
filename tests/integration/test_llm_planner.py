"""The LLM planner through the real openai SDK against ``heatup llm-stub`` over loopback HTTP:
every way an LLM answers ends in a valid plan, from the LLM when it can and the fallback
when it cannot."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx2
import pytest

from heatup_daemon.config.sections import LLMSettings, PlannerSettings
from heatup_daemon.config.settings import Settings
from heatup_daemon.errors import DatabaseUnavailable
from heatup_daemon.planner.chain import CircuitBreaker, LLMWithFallback
from heatup_daemon.planner.fallback import FallbackPlanner
from heatup_daemon.planner.llm import LLMPlanner
from heatup_daemon.planner.model import Plan, PlanContext
from heatup_daemon.records import PoolChannel
from heatup_daemon.testing import FakeClock, InMemoryStore, heatup_server
from tests.plans import assert_valid_plan

BOUNDS = PlannerSettings()
POOL = tuple(PoolChannel(f"chan{i:02d}", ["news", "tech", "music"][i % 3]) for i in range(12))
CONTEXT = PlanContext(
    7, POOL, frozenset({"chan00", "chan01"}), datetime(2026, 11, 26, 9, tzinfo=UTC)
)


class Stub:
    def __init__(self, url: str) -> None:
        self.url = url
        self._http = httpx2.Client(base_url=url)

    def scenario(self, name: str) -> None:
        self._http.put("/_stub/scenario", json={"scenario": name}).raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        return list(self._http.get("/_stub/requests").json())

    def close(self) -> None:
        self._http.close()


@pytest.fixture(scope="module")
def stub() -> Iterator[Stub]:
    with heatup_server("llm-stub") as url:
        control = Stub(url)
        yield control
        control.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_planner(
    stub: Stub, clock: FakeClock, ledger: InMemoryStore | None = None, **changes: Any
) -> LLMWithFallback:
    values: dict[str, Any] = {
        "base_url": f"{stub.url}/v1",
        "api_key": "sk-test-planted",
        "model": "stub-model",
        "timeout_s": 0.5,
        "max_retries": 0,
    }
    settings = LLMSettings(**(values | changes))
    return LLMWithFallback(
        LLMPlanner(settings, BOUNDS, clock),
        FallbackPlanner(BOUNDS, random.Random(1)),
        CircuitBreaker(settings.breaker_failures, settings.breaker_cooloff_s, clock),
        ledger or InMemoryStore(),
        settings.daily_token_budget,
        clock,
    )


@pytest.fixture
async def planner(stub: Stub, clock: FakeClock) -> AsyncIterator[LLMWithFallback]:
    stub.scenario("good")
    planner = make_planner(stub, clock)
    yield planner
    await planner.aclose()


async def test_good_answer_is_an_llm_plan(planner: LLMWithFallback, stub: Stub) -> None:
    before = len(stub.requests())
    plan = await planner.plan(CONTEXT)
    assert plan.source == "llm" and plan.model == "stub-model"
    assert plan.prompt_tokens > 0 and plan.completion_tokens > 0
    assert_valid_plan(plan.actions, CONTEXT, BOUNDS)
    first = plan.actions[0]  # the stub's own join: nothing of its plan was dropped or added
    assert first.action == "join_channel" and first.channel not in CONTEXT.joined
    assert plan.notes == ()
    request = stub.requests()[before]
    assert request["temperature"] == 1.0 and request["model"] == "stub-model"
    assert request["response_format"]["type"] == "json_schema"
    assert request["response_format"]["json_schema"]["strict"] is True
    assert "@chan00*" in request["messages"][1]["content"]


@pytest.mark.parametrize(
    ("scenario", "reason"),
    [
        ("malformed", "not JSON"),
        ("prose", "not JSON"),
        ("outside_pool", "usable actions"),
        ("too_few", "only 2 usable actions"),
        ("refusal", "refused"),
        ("length", "cut off"),
        ("rate_limited", "HTTP 429"),
        ("server_error", "HTTP 500"),
        ("timeout", "timeout"),
    ],
)
async def test_failures_fall_back(
    planner: LLMWithFallback, stub: Stub, scenario: str, reason: str
) -> None:
    stub.scenario(scenario)
    plan = await planner.plan(CONTEXT)
    assert plan.source == "fallback"
    assert plan.fallback_reason is not None and reason in plan.fallback_reason
    assert_valid_plan(plan.actions, CONTEXT, BOUNDS)
    assert "sk-test-planted" not in plan.fallback_reason


async def test_unusable_answers_still_count_their_tokens(
    planner: LLMWithFallback, stub: Stub
) -> None:
    stub.scenario("too_few")
    plan = await planner.plan(CONTEXT)
    assert plan.source == "fallback" and plan.prompt_tokens > 0
    ledger = planner._ledger
    assert await ledger.tokens_spent(datetime(2026, 1, 1).date()) == (
        plan.prompt_tokens + plan.completion_tokens
    )


async def test_too_many_and_unknown_actions_are_trimmed(
    planner: LLMWithFallback, stub: Stub
) -> None:
    stub.scenario("too_many")
    plan = await planner.plan(CONTEXT)
    assert plan.source == "llm" and len(plan.actions) == 7
    stub.scenario("unknown_action")
    plan = await planner.plan(CONTEXT)
    assert plan.source == "llm"
    assert {a.action for a in plan.actions} <= {
        "join_channel",
        "read_messages",
        "browse_dialogs",
        "idle",
    }
    assert any("unknown action 'send_message'" in note for note in plan.notes)


async def test_json_mode_when_json_schema_is_refused(planner: LLMWithFallback, stub: Stub) -> None:
    stub.scenario("no_json_schema")
    before = len(stub.requests())
    first = await planner.plan(CONTEXT)
    second = await planner.plan(CONTEXT)
    assert first.source == second.source == "llm"
    formats = [r["response_format"]["type"] for r in stub.requests()[before:]]
    assert formats == ["json_schema", "json_object", "json_object"]  # remembered


async def test_no_llm_configured_builds_no_llm_planner(clock: FakeClock) -> None:
    from heatup_daemon.metrics import Metrics
    from heatup_daemon.wiring import build_parts, node_lease

    store = InMemoryStore(clock)
    parts = build_parts(Settings(), store, clock, Metrics(), node_lease(Settings(), store))
    try:
        assert type(parts.planner) is FallbackPlanner
        plan = await parts.planner.plan(CONTEXT)
        assert (plan.source, plan.fallback_reason) == ("fallback", "no LLM configured")
    finally:
        await parts.aclose()


def most_a_plan_costs(stub: Stub, clock: FakeClock) -> int:
    return make_planner(stub, clock).llm.tokens_at_most(CONTEXT)


async def test_the_budget_is_shared_by_restarts_and_nodes(stub: Stub, clock: FakeClock) -> None:
    stub.scenario("good")
    ledger = InMemoryStore()  # what the database keeps for every process
    budget = most_a_plan_costs(stub, clock) + 100  # one plan fits, a second no longer does
    first = make_planner(stub, clock, ledger, daily_token_budget=budget)
    try:
        assert (await first.plan(CONTEXT)).source == "llm"
        spent = await ledger.tokens_spent(clock.now().date())
        assert 0 < spent < budget  # what it cost, the rest of its reservation given back
    finally:
        await first.aclose()
    restarted = make_planner(stub, clock, ledger, daily_token_budget=budget)
    try:
        before = len(stub.requests())
        plan = await restarted.plan(CONTEXT)
        assert plan.fallback_reason == "daily token budget spent"
        assert len(stub.requests()) == before  # no call made
        clock.advance(86400)  # a new UTC day
        assert (await restarted.plan(CONTEXT)).source == "llm"
    finally:
        await restarted.aclose()


async def test_plans_at_once_never_overshoot_the_budget(stub: Stub, clock: FakeClock) -> None:
    stub.scenario("good")
    ledger = InMemoryStore()
    budget = 2 * most_a_plan_costs(stub, clock) + 100  # two plans' worth, however they race
    planners = [make_planner(stub, clock, ledger, daily_token_budget=budget) for _ in range(2)]
    try:
        before = len(stub.requests())
        plans = await asyncio.gather(*(planners[i % 2].plan(CONTEXT) for i in range(8)))
        assert sum(p.source == "llm" for p in plans) == 2  # the calls that fit, no more
        assert len(stub.requests()) == before + 2
        assert await ledger.tokens_spent(clock.now().date()) <= budget
    finally:
        for planner in planners:
            await planner.aclose()


class SlowLedger(InMemoryStore):
    """A ledger that yields inside each write, as a database does, and loses the answer of
    its first settlement after committing it."""

    def __init__(self) -> None:
        super().__init__()
        self.answers_lost = 0

    async def reserve_tokens(self, key: str, day: Any, tokens: int, budget: int) -> bool:
        await asyncio.sleep(0.001)
        return await super().reserve_tokens(key, day, tokens, budget)

    async def settle_tokens(self, key: str, spent: int) -> None:
        await asyncio.sleep(0.001)
        await super().settle_tokens(key, spent)
        if not self.answers_lost:
            self.answers_lost += 1
            raise DatabaseUnavailable("the answer to the commit was lost")


async def test_plans_at_once_count_what_each_used_exactly_once(
    stub: Stub, clock: FakeClock
) -> None:
    stub.scenario("good")
    ledger = SlowLedger()
    planner = make_planner(stub, clock, ledger, daily_token_budget=10_000_000)
    try:
        plans = await asyncio.gather(*(planner.plan(CONTEXT) for _ in range(10)))
        plans.append(await planner.plan(CONTEXT))  # asks again what a lost answer left owed
        assert all(plan.source == "llm" for plan in plans) and ledger.answers_lost == 1
        used = sum(plan.prompt_tokens + plan.completion_tokens for plan in plans)
        assert await ledger.tokens_spent(clock.now().date()) == used
    finally:
        await planner.aclose()


async def test_tokens_spent_while_the_database_is_away_are_counted(
    stub: Stub, clock: FakeClock
) -> None:
    stub.scenario("good")
    ledger = InMemoryStore()
    planner = make_planner(stub, clock, ledger)
    original = planner.llm.plan

    async def database_goes_away(context: PlanContext) -> Plan:
        plan = await original(context)
        ledger.unavailable = True  # between the call and the count
        return plan

    planner.llm.plan = database_goes_away  # type: ignore[method-assign]
    try:
        first = await planner.plan(CONTEXT)
        assert first.source == "llm"
        ledger.unavailable = False
        planner.llm.plan = original  # type: ignore[method-assign]
        second = await planner.plan(CONTEXT)  # its reservation writes the count first
        spent = await ledger.tokens_spent(clock.now().date())
        cost = [plan.prompt_tokens + plan.completion_tokens for plan in (first, second)]
        assert cost[0] > 0 and spent == sum(cost)  # both plans counted, once each
    finally:
        await planner.aclose()


async def test_breaker_opens_then_tries_again(stub: Stub, clock: FakeClock) -> None:
    stub.scenario("server_error")
    planner = make_planner(stub, clock, breaker_failures=2, breaker_cooloff_s=60)
    try:
        before = len(stub.requests())
        for _ in range(2):
            assert (await planner.plan(CONTEXT)).source == "fallback"
        plan = await planner.plan(CONTEXT)
        assert plan.fallback_reason == "LLM circuit breaker open"
        assert len(stub.requests()) == before + 2  # the open breaker made no call
        clock.advance(61)
        stub.scenario("good")
        assert (await planner.plan(CONTEXT)).source == "llm"  # half-open trial succeeded
        assert planner.breaker.consecutive_failures == 0
    finally:
        await planner.aclose()


async def test_against_a_hanging_llm_one_run_per_trial_waits(stub: Stub, clock: FakeClock) -> None:
    stub.scenario("timeout")
    planner = make_planner(stub, clock, breaker_failures=1, breaker_cooloff_s=60)
    try:
        await planner.plan(CONTEXT)  # times out: the breaker opens
        clock.advance(61)
        before = len(stub.requests())
        plans = await asyncio.gather(*(planner.plan(CONTEXT) for _ in range(10)))
        assert len(stub.requests()) == before + 1  # one trial; nine planned at once
        reasons = sorted(p.fallback_reason or "" for p in plans)
        assert reasons.count("LLM circuit breaker open") == 9
        assert all(p.source == "fallback" for p in plans)
    finally:
        await planner.aclose()
