"""Planning with an LLM through the official openai SDK, falling back to the built-in planner.

Any OpenAI-compatible endpoint works (``llm.base_url``). heatup asks for structured output
(a strict JSON schema of ``PlanOut``); a server that refuses JSON-schema output is asked
again in JSON mode (``response_format: json_object``), and the process keeps using JSON mode.
Whatever comes back is validated action by action (``validate.validate_actions``).

The fallback plans when no LLM is configured, when the call fails or its answer leaves too
little, when the day's token budget is spent, and while the circuit breaker is open after
``llm.breaker_failures`` consecutive failures (so a dead LLM does not add its timeout to
every run).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import replace
from datetime import date
from typing import Any, Final

import openai

from heatup_daemon import metrics
from heatup_daemon.clock import Clock
from heatup_daemon.config import LLMSettings, PlannerSettings
from heatup_daemon.planner.fallback import FallbackPlanner
from heatup_daemon.planner.model import MAX_ACTIONS, MIN_ACTIONS, Plan, PlanContext, PlanOut
from heatup_daemon.planner.validate import UnusablePlan, actions_of, validate_actions

log = logging.getLogger(__name__)

MAX_ANSWER_TOKENS: Final = 700
PLAN_SCHEMA: Final = {
    "type": "json_schema",
    "json_schema": {"name": "plan", "strict": True, "schema": PlanOut.model_json_schema()},
}
JSON_MODE: Final = {"type": "json_object"}


class TokenBudget:
    """Tokens spent per UTC day against ``llm.daily_token_budget`` (0: no LLM calls)."""

    def __init__(self, daily: int, clock: Clock) -> None:
        self.daily = daily
        self._clock = clock
        self._spent: dict[date, int] = defaultdict(int)

    def _today(self) -> date:
        return self._clock.now().date()

    def spent_today(self) -> int:
        return self._spent[self._today()]

    def allows(self) -> bool:
        return self.spent_today() < self.daily

    def spend(self, tokens: int) -> None:
        today = self._today()
        self._spent = defaultdict(int, {today: self._spent[today] + tokens})


class CircuitBreaker:
    """Opens after ``failures`` consecutive failures; after ``cooloff_s`` one trial call is
    let through (half-open): a success closes it, a failure opens it again."""

    def __init__(self, failures: int, cooloff_s: float, clock: Clock) -> None:
        self._threshold = failures
        self._cooloff_s = cooloff_s
        self._clock = clock
        self.consecutive_failures = 0
        self._open_until: float | None = None

    @property
    def is_open(self) -> bool:
        return self._open_until is not None and self._clock.monotonic() < self._open_until

    def allows(self) -> bool:
        return not self.is_open

    def success(self) -> None:
        self.consecutive_failures = 0
        self._open_until = None

    def failure(self) -> None:
        self.consecutive_failures += 1
        if self.consecutive_failures >= self._threshold:
            self._open_until = self._clock.monotonic() + self._cooloff_s


def system_prompt(bounds: PlannerSettings) -> str:
    return (
        "You plan a few minutes of ordinary Telegram activity for one account. Answer with "
        'JSON only: {"actions": [{"action": ..., "channel": "@username" or null, '
        '"duration_seconds": number or null, "reason": "a few words"}]}.\n'
        f"Rules: {MIN_ACTIONS} to {MAX_ACTIONS} actions, each one of: join_channel (a pool "
        "channel not joined yet); read_messages (a joined channel, or one joined earlier in "
        f"the plan; {bounds.read_min_s:g}-{bounds.read_max_s:g} s); browse_dialogs (no channel); "
        f"idle (no channel; {bounds.idle_min_s:g}-{bounds.idle_max_s:g} s). Use only pool "
        "channels. Join at least one channel while some are not joined. Vary channels, order "
        "and durations, as a person would at this time of day."
    )


def user_prompt(context: PlanContext) -> str:
    by_category: dict[str, list[str]] = defaultdict(list)
    for channel in context.pool:
        mark = "*" if channel.username in context.joined else ""
        by_category[channel.category or "other"].append(f"@{channel.username}{mark}")
    pool = "\n".join(f"{category}: {' '.join(names)}" for category, names in by_category.items())
    lines = [
        f"Local time: {context.local_time:%A %H:%M}.",
        "Pool channels by category (* = joined):",
        pool,
    ]
    if context.recent_runs:
        lines += ["Recent runs:", *context.recent_runs]
    return "\n".join(lines)


class LLMPlanner:
    """The ``Planner`` of the daemon: LLM first, the fallback whenever that cannot serve."""

    def __init__(
        self,
        settings: LLMSettings,
        bounds: PlannerSettings,
        fallback: FallbackPlanner,
        clock: Clock,
        client: openai.AsyncOpenAI | None = None,
    ) -> None:
        self._settings = settings
        self._bounds = bounds
        self._fallback = fallback
        self._clock = clock
        self.budget = TokenBudget(settings.daily_token_budget, clock)
        self.breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_cooloff_s, clock)
        self._response_format: dict[str, Any] = (
            PLAN_SCHEMA if settings.response_format == "json_schema" else JSON_MODE
        )
        self._client = client
        if client is None and settings.configured:
            key = settings.api_key.get_secret_value() if settings.api_key else "unused"
            self._client = openai.AsyncOpenAI(
                base_url=settings.base_url,
                api_key=key,
                timeout=settings.timeout_s,
                max_retries=settings.max_retries,
            )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def plan(self, context: PlanContext) -> Plan:
        client = self._client
        if client is None:
            return self._fallback.plan(context, "no LLM configured")
        if not self.budget.allows():
            return self._fallback.plan(context, "daily token budget spent")
        if not self.breaker.allows():
            return self._fallback.plan(context, "LLM circuit breaker open")
        messages: Any = [
            {"role": "system", "content": system_prompt(self._bounds)},
            {"role": "user", "content": user_prompt(context)},
        ]
        prompt_tokens = completion_tokens = 0
        started = self._clock.monotonic()
        try:
            completion = await self._complete(client, messages)
            if completion.usage is not None:
                prompt_tokens = completion.usage.prompt_tokens
                completion_tokens = completion.usage.completion_tokens
            self.budget.spend(prompt_tokens + completion_tokens)
            metrics.LLM_TOKENS.labels("prompt").inc(prompt_tokens)
            metrics.LLM_TOKENS.labels("completion").inc(completion_tokens)
            actions, notes = self._read(completion, context)
        except (openai.OpenAIError, UnusablePlan) as exc:
            metrics.LLM_REQUESTS.labels(_outcome(exc)).inc()
            metrics.LLM_LATENCY.observe(self._clock.monotonic() - started)
            self.breaker.failure()
            reason = _describe(exc)
            log.warning("LLM planning failed, using the fallback: %s", reason)
            fallback = self._fallback.plan(context, f"LLM failed: {reason}")
            # Tokens an unusable answer cost still count.
            return replace(
                fallback, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
            )
        metrics.LLM_REQUESTS.labels("ok").inc()
        metrics.LLM_LATENCY.observe(self._clock.monotonic() - started)
        self.breaker.success()
        return Plan(
            actions,
            "llm",
            model=completion.model or self._settings.model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            notes=tuple(notes),
        )

    async def _complete(self, client: openai.AsyncOpenAI, messages: Any) -> Any:
        try:
            return await self._create(client, messages)
        except openai.BadRequestError as exc:
            if self._response_format is JSON_MODE or "response_format" not in str(exc):
                raise
        log.warning("the LLM server refuses JSON-schema output; using JSON mode from now on")
        self._response_format = JSON_MODE
        return await self._create(client, messages)

    async def _create(self, client: openai.AsyncOpenAI, messages: Any) -> Any:
        # response_format is one of two plain dicts the SDK's TypedDicts describe.
        return await client.chat.completions.create(  # type: ignore[call-overload]
            model=self._settings.model,
            messages=messages,
            temperature=self._settings.temperature,
            max_tokens=MAX_ANSWER_TOKENS,
            response_format=self._response_format,
        )

    def _read(self, completion: Any, context: PlanContext) -> tuple[Any, list[str]]:
        if not completion.choices:
            raise UnusablePlan("the answer has no choices")
        choice = completion.choices[0]
        if choice.finish_reason == "length":
            raise UnusablePlan("the answer was cut off at the token limit")
        refusal = getattr(choice.message, "refusal", None)
        if refusal:
            raise UnusablePlan(f"the model refused: {str(refusal)[:100]}")
        items = actions_of(choice.message.content or "")
        return validate_actions(items, context, self._bounds)


def _outcome(exc: BaseException) -> str:
    """A metric label for a failed LLM call, from a small fixed set."""
    if isinstance(exc, UnusablePlan):
        return "unusable_answer"
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.RateLimitError):
        return "rate_limited"
    if isinstance(exc, openai.APIStatusError):
        return "http_error"
    return "connection_error" if isinstance(exc, openai.APIConnectionError) else "error"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}"
    if isinstance(exc, openai.APIConnectionError):
        return "connection failed"
    return str(exc)[:200] or type(exc).__name__
