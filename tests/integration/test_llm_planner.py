"""The LLM planner through the real openai SDK against ``heatup llm-stub`` over loopback HTTP:
every way an LLM answers ends in a valid plan, from the LLM when it can and the fallback
when it cannot."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx2
import pytest

from heatup_daemon.config import LLMSettings, PlannerSettings
from heatup_daemon.planner.fallback import FallbackPlanner
from heatup_daemon.planner.llm import LLMPlanner
from heatup_daemon.planner.model import PlanContext, PoolChannel
from heatup_daemon.testing import FakeClock, heatup_server
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


def make_planner(stub: Stub, clock: FakeClock, **changes: Any) -> LLMPlanner:
    values: dict[str, Any] = {
        "base_url": f"{stub.url}/v1",
        "api_key": "sk-test-planted",
        "model": "stub-model",
        "timeout_s": 0.5,
        "max_retries": 0,
    }
    settings = LLMSettings(**(values | changes))
    return LLMPlanner(settings, BOUNDS, FallbackPlanner(BOUNDS, random.Random(1)), clock)


@pytest.fixture
async def planner(stub: Stub, clock: FakeClock) -> AsyncIterator[LLMPlanner]:
    stub.scenario("good")
    planner = make_planner(stub, clock)
    yield planner
    await planner.aclose()


async def test_good_answer_is_an_llm_plan(planner: LLMPlanner, stub: Stub) -> None:
    before = len(stub.requests())
    plan = await planner.plan(CONTEXT)
    assert plan.source == "llm" and plan.model == "stub-model"
    assert plan.prompt_tokens > 0 and plan.completion_tokens > 0
    assert_valid_plan(plan.actions, CONTEXT, BOUNDS)
    assert plan.actions[0].kind == "join_channel" and plan.actions[0].channel == "chan02"
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
    planner: LLMPlanner, stub: Stub, scenario: str, reason: str
) -> None:
    stub.scenario(scenario)
    plan = await planner.plan(CONTEXT)
    assert plan.source == "fallback"
    assert plan.fallback_reason is not None and reason in plan.fallback_reason
    assert_valid_plan(plan.actions, CONTEXT, BOUNDS)
    assert "sk-test-planted" not in plan.fallback_reason


async def test_unusable_answers_still_count_their_tokens(planner: LLMPlanner, stub: Stub) -> None:
    stub.scenario("too_few")
    plan = await planner.plan(CONTEXT)
    assert plan.source == "fallback" and plan.prompt_tokens > 0
    assert planner.budget.spent_today() == plan.prompt_tokens + plan.completion_tokens


async def test_too_many_and_unknown_actions_are_trimmed(planner: LLMPlanner, stub: Stub) -> None:
    stub.scenario("too_many")
    plan = await planner.plan(CONTEXT)
    assert plan.source == "llm" and len(plan.actions) == 7
    stub.scenario("unknown_action")
    plan = await planner.plan(CONTEXT)
    assert plan.source == "llm"
    assert {a.kind for a in plan.actions} <= {
        "join_channel",
        "read_messages",
        "browse_dialogs",
        "idle",
    }
    assert any("unknown action 'send_message'" in note for note in plan.notes)


async def test_json_mode_when_json_schema_is_refused(planner: LLMPlanner, stub: Stub) -> None:
    stub.scenario("no_json_schema")
    before = len(stub.requests())
    first = await planner.plan(CONTEXT)
    second = await planner.plan(CONTEXT)
    assert first.source == second.source == "llm"
    formats = [r["response_format"]["type"] for r in stub.requests()[before:]]
    assert formats == ["json_schema", "json_object", "json_object"]  # remembered


async def test_no_llm_configured(clock: FakeClock) -> None:
    planner = LLMPlanner(LLMSettings(), BOUNDS, FallbackPlanner(BOUNDS), clock)
    plan = await planner.plan(CONTEXT)
    assert (plan.source, plan.fallback_reason) == ("fallback", "no LLM configured")


async def test_budget_sends_planning_to_the_fallback(stub: Stub, clock: FakeClock) -> None:
    stub.scenario("good")
    planner = make_planner(stub, clock, daily_token_budget=100)
    try:
        assert (await planner.plan(CONTEXT)).source == "llm"  # spends more than 100 tokens
        before = len(stub.requests())
        plan = await planner.plan(CONTEXT)
        assert plan.fallback_reason == "daily token budget spent"
        assert len(stub.requests()) == before  # no call made
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
