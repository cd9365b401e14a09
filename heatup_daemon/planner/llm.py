"""Planning with an LLM through the official openai SDK.

Any OpenAI-compatible endpoint works (``llm.base_url``). heatup asks for structured output
(a strict JSON schema of ``PlanOut``); a server that refuses JSON-schema output is asked
again in JSON mode (``response_format: json_object``), and the process keeps using JSON mode.
Whatever comes back is validated action by action (``validate.validate_actions``).

``LLMPlanner`` only talks to the LLM: it plans, or raises ``PlannerUnavailable``.
``planner.chain.LLMWithFallback`` adds the token budget, the circuit breaker and the fallback.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from typing import Any, Final, Protocol

import openai

from heatup_daemon.config.sections import LLMSettings, PlannerSettings
from heatup_daemon.enums import LLMOutcome, PlanSource
from heatup_daemon.errors import PlannerUnavailable
from heatup_daemon.planner.model import MAX_ACTIONS, MIN_ACTIONS, Plan, PlanContext, PlanOut
from heatup_daemon.planner.validate import UnusablePlan, Validated, actions_of, validate_actions
from heatup_daemon.timing.clock import Clock

log = logging.getLogger(__name__)

MAX_ANSWER_TOKENS: Final = 700
# The chat format's own tokens around the messages.
PROMPT_FRAMING_TOKENS: Final = 50
PLAN_SCHEMA: Final = {
    "type": "json_schema",
    "json_schema": {"name": "plan", "strict": True, "schema": PlanOut.model_json_schema()},
}
JSON_MODE: Final = {"type": "json_object"}


def system_prompt(bounds: PlannerSettings) -> str:
    return (
        "You plan a few minutes of ordinary Telegram activity for one account. Answer with "
        'JSON only: {"actions": [{"action": ..., "channel": "@username" or null, '
        '"duration_seconds": number or null, "reason": "a few words"}]}.\n'
        f"Rules: {MIN_ACTIONS} to {MAX_ACTIONS} actions, each one of: join_channel (a pool "
        "channel not joined yet); read_messages (a joined channel, or one joined earlier in "
        f"the plan; {bounds.read_min_s:g}-{bounds.read_max_s:g} s); browse_dialogs (no channel); "
        f"idle (no channel; {bounds.idle_min_s:g}-{bounds.idle_max_s:g} s). Use only pool "
        "channels. Join at least one channel while some may be joined, but never more than "
        "the joins allowed, and no channel marked ! (full this hour). Vary channels, order "
        "and durations, as a person would at this time of day."
    )


def user_prompt(context: PlanContext) -> str:
    by_category: dict[str, list[str]] = defaultdict(list)
    for channel in context.pool:
        if channel.username in context.joined:
            mark = "*"
        else:
            mark = "!" if context.room(channel.username) <= 0 else ""
        by_category[channel.category or "other"].append(f"@{channel.username}{mark}")
    pool = "\n".join(f"{category}: {' '.join(names)}" for category, names in by_category.items())
    lines = [
        f"Local time: {context.local_time:%A %H:%M}.",
        f"Joins allowed in this plan: {min(context.join_allowance, MAX_ACTIONS)}.",
        "Pool channels by category (* = joined, ! = full this hour):",
        pool,
    ]
    if context.recent_runs:
        lines += ["Recent runs:", *context.recent_runs]
    return "\n".join(lines)


class LLMObserver(Protocol):
    """Hears of each LLM call: its outcome, seconds and tokens."""

    def llm_request(
        self, outcome: LLMOutcome, seconds: float, prompt: int, completion: int
    ) -> None: ...


class LLMPlanner:
    """A ``Planner`` that asks the LLM; any failure is a ``PlannerUnavailable``."""

    def __init__(
        self,
        settings: LLMSettings,
        bounds: PlannerSettings,
        clock: Clock,
        *,
        client: openai.AsyncOpenAI | None = None,
        observer: LLMObserver | None = None,
    ) -> None:
        self._settings = settings
        self._observer = observer
        self._bounds = bounds
        self._clock = clock
        self._response_format: dict[str, Any] = (
            PLAN_SCHEMA if settings.response_format == "json_schema" else JSON_MODE
        )
        if client is None:
            key = settings.api_key.get_secret_value() if settings.api_key else "unused"
            client = openai.AsyncOpenAI(
                base_url=settings.base_url,
                api_key=key,
                timeout=settings.timeout_s,
                max_retries=settings.max_retries,
            )
        self._client = client

    async def aclose(self) -> None:
        await self._client.close()

    def messages(self, context: PlanContext) -> Any:
        return [
            {"role": "system", "content": system_prompt(self._bounds)},
            {"role": "user", "content": user_prompt(context)},
        ]

    def tokens_at_most(self, context: PlanContext) -> int:
        """More tokens than a plan for ``context`` costs: its prompt (the messages and the
        schema, at most a token per 3 characters, and the chat format's framing) and the
        longest answer. A 50-channel pool's prompt measured 3.6 characters a token."""
        characters = sum(len(m["content"]) for m in self.messages(context))
        characters += len(json.dumps(self._response_format))
        return characters // 3 + PROMPT_FRAMING_TOKENS + MAX_ANSWER_TOKENS

    async def plan(self, context: PlanContext) -> Plan:
        messages = self.messages(context)
        prompt_tokens = completion_tokens = 0
        started = self._clock.monotonic()
        try:
            completion = await self._complete(messages)
            if completion.usage is not None:
                prompt_tokens = completion.usage.prompt_tokens
                completion_tokens = completion.usage.completion_tokens
            validated = self._read(completion, context)
        except (openai.OpenAIError, UnusablePlan) as exc:
            outcome = _outcome(exc)
            self._report(outcome, started, prompt_tokens, completion_tokens)
            raise PlannerUnavailable(
                f"LLM failed: {_describe(exc)}", outcome, prompt_tokens, completion_tokens
            ) from None
        self._report(LLMOutcome.OK, started, prompt_tokens, completion_tokens)
        return Plan(
            validated.actions,
            PlanSource.LLM,
            model=completion.model or self._settings.model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            notes=validated.notes,
            joins_dropped=validated.joins_dropped,
        )

    def _report(self, outcome: LLMOutcome, started: float, prompt: int, completion: int) -> None:
        if self._observer is not None:
            seconds = self._clock.monotonic() - started
            self._observer.llm_request(outcome, seconds, prompt, completion)

    async def _complete(self, messages: Any) -> Any:
        try:
            return await self._create(messages)
        except openai.BadRequestError as exc:
            if self._response_format is JSON_MODE or "response_format" not in str(exc):
                raise
        log.warning("the LLM server refuses JSON-schema output; using JSON mode from now on")
        self._response_format = JSON_MODE
        return await self._create(messages)

    async def _create(self, messages: Any) -> Any:
        # response_format is one of two plain dicts the SDK's TypedDicts describe.
        return await self._client.chat.completions.create(  # type: ignore[call-overload]
            model=self._settings.model,
            messages=messages,
            temperature=self._settings.temperature,
            max_tokens=MAX_ANSWER_TOKENS,
            response_format=self._response_format,
        )

    def _read(self, completion: Any, context: PlanContext) -> Validated:
        if not completion.choices:
            raise UnusablePlan("the answer has no choices")
        choice = completion.choices[0]
        if choice.finish_reason == "length":
            raise UnusablePlan("the answer was cut off at the token limit")
        refusal = getattr(choice.message, "refusal", None)
        if refusal:
            raise UnusablePlan(f"the model refused: {str(refusal)[:100]}")
        return validate_actions(actions_of(choice.message.content or ""), context, self._bounds)


def _outcome(exc: BaseException) -> LLMOutcome:
    """How a failed LLM call ended."""
    if isinstance(exc, UnusablePlan):
        return LLMOutcome.UNUSABLE_ANSWER
    if isinstance(exc, openai.APITimeoutError):
        return LLMOutcome.TIMEOUT
    if isinstance(exc, openai.RateLimitError):
        return LLMOutcome.RATE_LIMITED
    if isinstance(exc, openai.APIStatusError):
        return LLMOutcome.HTTP_ERROR
    if isinstance(exc, openai.APIConnectionError):
        return LLMOutcome.CONNECTION_ERROR
    return LLMOutcome.ERROR


def _describe(exc: BaseException) -> str:
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}"
    if isinstance(exc, openai.APIConnectionError):
        return "connection failed"
    return str(exc)[:200] or type(exc).__name__
