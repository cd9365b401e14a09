"""An OpenAI-compatible stub: ``POST /v1/chat/completions`` answered by a scenario.

For tests (the planner's tests use the real openai SDK against it over loopback) and by hand
(``heatup llm-stub``). The ``good`` scenario reads the pool and joined channels out of
heatup's prompt and answers a valid plan; the others answer each way an LLM can fail.
``PUT /_stub/scenario`` with ``{"scenario": NAME}`` switches scenario; ``GET /_stub/requests``
lists the request bodies received, and ``GET /_stub/arrivals`` when each arrived (Unix time).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from typing import Any, Final

from heatup_daemon.sandbox.asgi import Receive, Reply, Scope, Send, lifespan, read_body, send_json

SCENARIOS: Final = (
    "good",  # a valid plan built from the prompt
    "malformed",  # content that is not JSON
    "prose",  # a chatty answer with no JSON
    "outside_pool",  # channels that are not in the pool
    "too_many",  # twelve actions
    "too_few",  # two actions
    "unknown_action",  # actions outside the vocabulary among valid ones
    "timeout",  # no answer until the client gives up
    "rate_limited",  # HTTP 429
    "server_error",  # HTTP 500
    "refusal",  # a refusal instead of content
    "length",  # cut off at the token limit
    "no_json_schema",  # HTTP 400 for JSON-schema output; JSON mode works
    "hostile",  # channel names crafted to break out of a query, among valid actions
)
HOSTILE_CHANNELS: Final = (
    "@x');__import__('os').system('id')#",
    "@../../etc/passwd",
    "@durov' OR '1'='1",
    "@telegram\nGetDialogs()",
    "@" + "a" * 300,
)
# The sections of heatup's user prompt (``planner.llm.user_prompt``).
POOL_HEADING: Final = "Pool channels by category"
RECENT_HEADING: Final = "Recent runs:"
_MENTION_RE: Final = re.compile(r"@([A-Za-z][A-Za-z0-9_]{3,31})(\*?)")


def pool_lines(messages: Any) -> str:
    """The pool as heatup's user prompt lists it (``@name``, ``*`` once joined): not the
    system prompt's example channel, nor the channels of the recent runs."""
    if not isinstance(messages, list):
        return ""
    text = "\n".join(
        str(m.get("content", ""))
        for m in messages
        if isinstance(m, dict) and m.get("role") == "user"
    )
    start, end = text.find(POOL_HEADING), text.find(RECENT_HEADING)
    if start < 0:
        return text
    return text[start : end if end > start else len(text)]


def good_plan(prompt: str) -> list[dict[str, Any]]:
    """A valid plan for the pool listed in heatup's prompt."""
    joined = [name for name, mark in _MENTION_RE.findall(prompt) if mark]
    unjoined = [name for name, mark in _MENTION_RE.findall(prompt) if not mark]
    actions: list[dict[str, Any]] = []
    if unjoined:
        actions.append(_act("join_channel", unjoined[0], None, "new channel"))
        joined = [unjoined[0], *joined]
    if joined:
        actions.append(_act("read_messages", joined[0], 12.0, "read the latest posts"))
    actions.append(_act("browse_dialogs", None, None, "look at the chat list"))
    actions.append(_act("idle", None, 8.0, "a short break"))
    if len(joined) > 1:
        actions.append(_act("read_messages", joined[1], 20.0, "catch up"))
    return actions


def _act(kind: str, channel: str | None, seconds: float | None, reason: str) -> dict[str, Any]:
    return {
        "action": kind,
        "channel": f"@{channel}" if channel else None,
        "duration_seconds": seconds,
        "reason": reason,
    }


def _content(scenario: str, prompt: str) -> str | None:
    plan = good_plan(prompt)
    if scenario == "malformed":
        return '{"actions": [{"action": "join_channel", "channel": '
    if scenario == "prose":
        return "Sure! First join a news channel, then read it for a while."
    if scenario == "outside_pool":
        plan = [_act("join_channel", f"notinpool{i}", None, "x") for i in range(4)]
        plan += [_act("read_messages", "notinpool9", 10.0, "x")]
    elif scenario == "too_many":
        plan = [*plan, _act("browse_dialogs", None, None, "more"), _act("idle", None, 5, "")] * 3
    elif scenario == "too_few":
        plan = plan[-2:]
    elif scenario == "hostile":
        plan = [_act("join_channel", name[1:], None, "x") for name in HOSTILE_CHANNELS] + plan
    elif scenario == "unknown_action":
        plan = [_act("send_message", "durov", None, "hi"), *plan, _act("react", None, None, "x")]
    return json.dumps({"actions": plan})


class LLMStubApp:
    """ASGI app. ``requests`` holds every completion request body received."""

    def __init__(self, scenario: str = "good", hang_s: float = 120.0) -> None:
        self.scenario = scenario
        self.hang_s = hang_s
        self.requests: list[dict[str, Any]] = []
        self.arrivals: list[float] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await lifespan(receive, send)
            return
        body, _ = await read_body(receive)
        path, method = scope["path"], scope["method"]
        if path == "/healthz":
            await send_json(send, Reply(200, {"status": "ok"}, "ok"))
        elif path == "/_stub/scenario" and method == "PUT":
            await send_json(send, self._set_scenario(body))
        elif path == "/_stub/requests" and method == "GET":
            await send_json(send, Reply(200, self.requests, "ok"))
        elif path == "/_stub/arrivals" and method == "GET":
            await send_json(send, Reply(200, self.arrivals, "ok"))
        elif path == "/v1/chat/completions" and method == "POST":
            await self._complete(body, receive, send)
        else:
            await send_json(send, Reply(404, _error("not found", "invalid_request_error"), "ok"))

    def _set_scenario(self, body: bytes) -> Reply:
        scenario = json.loads(body or b"{}").get("scenario")
        if scenario not in SCENARIOS:
            return Reply(422, {"detail": f"scenario must be one of {SCENARIOS}"}, "invalid")
        self.scenario = scenario
        return Reply(200, {"scenario": scenario}, "ok")

    async def _complete(self, body: bytes, receive: Receive, send: Send) -> None:
        try:
            request = json.loads(body)
        except ValueError:
            await send_json(
                send, Reply(400, _error("body is not JSON", "invalid_request_error"), "")
            )
            return
        self.requests.append(request)
        self.arrivals.append(time.time())
        scenario = self.scenario
        if scenario == "timeout":
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.hang_s):
                    while (await receive())["type"] != "http.disconnect":
                        pass
            return
        if scenario == "rate_limited":
            await send_json(
                send, Reply(429, _error("Rate limit reached", "rate_limit_exceeded"), "")
            )
            return
        if scenario == "server_error":
            await send_json(send, Reply(500, _error("The server had an error", "server_error"), ""))
            return
        response_format = (request.get("response_format") or {}).get("type")
        if scenario == "no_json_schema" and response_format == "json_schema":
            message = "response_format of type json_schema is not supported by this model"
            await send_json(send, Reply(400, _error(message, "invalid_request_error"), ""))
            return
        prompt = pool_lines(request.get("messages", []))
        await send_json(send, Reply(200, _completion(request, scenario, prompt), ""))


def _completion(request: dict[str, Any], scenario: str, prompt: str) -> dict[str, Any]:
    content = None if scenario == "refusal" else _content(scenario, prompt)
    if scenario == "length" and content:
        content = content[: len(content) // 2]
    message = {
        "role": "assistant",
        "content": content,
        "refusal": "I can't help with that." if scenario == "refusal" else None,
    }
    prompt_tokens = len(prompt) // 4
    completion_tokens = len(content or "") // 4
    return {
        "id": f"chatcmpl-stub-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(request.get("model", "stub")),
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "length" if scenario == "length" else "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}
