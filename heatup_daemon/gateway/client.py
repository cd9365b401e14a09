"""``HttpGateway``: the session gateway over HTTP (GATEWAY.md).

One ``aiohttp.ClientSession`` per process, bounded by ``gateway.max_connections``. aiohttp
rather than httpx2 (which the openai SDK keeps): at the natural pace a request or two is on
the wire while most pooled connections sit idle, and aiohttp hands out an idle connection in
constant time where httpx2's pool checks every idle socket on every request
(``bench/gateway_client.py`` measures both; the README gives the figures). Transient
failures (5xx, 429, timeouts, resets, bodies that are not JSON) are retried with capped
exponential backoff and full jitter until ``gateway.retry_attempts`` or
``gateway.retry_deadline_s`` runs out; nothing else is retried. The executor bounds a whole
action's requests by one deadline on top (``run.executor``).

Secrets stay out of everything this module produces: the bearer token lives only in the
client's default headers, the session body is reduced to a few fields as it arrives, and
error messages are excerpts with the token redacted.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import aiohttp

from heatup_daemon.config.sections import GatewaySettings
from heatup_daemon.errors import (
    GatewayAuthFailed,
    GatewayError,
    GatewayUnavailable,
    InvalidValue,
    RequestRejected,
    RpcFailed,
    UnknownSession,
)
from heatup_daemon.gateway import tl
from heatup_daemon.gateway.outcomes import excerpt, rpc_result
from heatup_daemon.timing.clock import Clock, SystemClock
from heatup_daemon.validation import parse_gateway_id, parse_username

log = logging.getLogger(__name__)

# What heatup asks the gateway to do inside one invoke. sleep_threshold 0: the gateway does
# not sleep through flood waits itself, so every one reaches heatup and becomes a cooldown.
INVOKE_RETRIES: Final = 3
INVOKE_TIMEOUT_S: Final = 15
INVOKE_SLEEP_THRESHOLD_S: Final = 0
# Telegram's answer to joining a channel the session is a member of already.
ALREADY_MEMBER: Final = "USER_ALREADY_PARTICIPANT"
DIALOGS_LIMIT: Final = 20
HISTORY_LIMIT: Final = 20

# (operation, outcome, seconds) for each HTTP attempt; the metrics module subscribes.
RequestObserver = Callable[[str, str, float], None]


@dataclass(frozen=True, slots=True)
class HistoryRead:
    channel: tl.ChannelRef
    message_count: int
    max_id: int | None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int
    deadline_s: float
    backoff_initial_s: float
    backoff_max_s: float

    @classmethod
    def of(cls, settings: GatewaySettings) -> RetryPolicy:
        return cls(
            attempts=settings.retry_attempts,
            deadline_s=settings.retry_deadline_s,
            backoff_initial_s=settings.retry_backoff_initial_s,
            backoff_max_s=settings.retry_backoff_max_s,
        )

    def backoff_s(self, failures: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max, initial * 2**(failures-1))]."""
        cap = min(self.backoff_max_s, self.backoff_initial_s * 2 ** (failures - 1))
        return rng.uniform(0, cap)


class _Transient(Exception):
    """A failure worth retrying. ``outcome`` is a metric label from a small fixed set."""

    def __init__(self, outcome: str, detail: str, retry_after_s: float = 0.0) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.retry_after_s = retry_after_s


class HttpGateway:
    """The gateway client. Construct one per process and ``aclose()`` it at shutdown."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        observe: RequestObserver | None = None,
    ) -> None:
        self._settings = settings
        self._policy = RetryPolicy.of(settings)
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._observe = observe
        token = settings.token.get_secret_value() if settings.token else ""
        self._secrets = (token,) if token else ()
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._base = f"{settings.base_url.rstrip('/')}/api/external"
        self._http: aiohttp.ClientSession | None = None  # made in the event loop, when first used
        self.auth_failing = False

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                headers=self._headers,
                connector=aiohttp.TCPConnector(limit=self._settings.max_connections),
                # A stray proxy variable never reroutes the gateway's calls (or its token).
                trust_env=False,
            )
        return self._http

    def _timeout(self, budget_s: float) -> aiohttp.ClientTimeout:
        read = max(min(self._settings.read_timeout_s, budget_s), 0.001)
        connect = max(min(self._settings.connect_timeout_s, budget_s), 0.001)
        return aiohttp.ClientTimeout(total=None, connect=connect, sock_read=read)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()

    # --- operations ---------------------------------------------------------------------

    async def join_channel(self, gateway_session_id: int, username: str) -> None:
        """Join a public channel (already being a member counts as joined)."""
        chat_id = f"@{parse_username(username)}"
        payload = {"method": "join_chat", "params": {"chat_id": chat_id}}
        try:
            await self._rpc(gateway_session_id, "join_chat", "join_channel", payload)
        except RpcFailed as error:
            if error.code != ALREADY_MEMBER:
                raise

    async def is_member(self, gateway_session_id: int, username: str) -> bool | None:
        """Whether the session is a member of the channel (read-only: resolves it and reads
        Telegram's ``left`` flag); ``None`` when the answer does not say."""
        channel = await self._resolve(gateway_session_id, username)
        return None if channel.left is None else not channel.left

    async def browse_dialogs(self, gateway_session_id: int, limit: int = DIALOGS_LIMIT) -> int:
        """Fetch the dialog list; return how many dialogs it held."""
        answer = await self._invoke(gateway_session_id, "get_dialogs", tl.get_dialogs(limit))
        return tl.parse_dialog_count(answer)

    async def read_history(
        self, gateway_session_id: int, username: str, limit: int = HISTORY_LIMIT
    ) -> HistoryRead:
        """Resolve a channel, fetch its recent messages and mark them read."""
        channel = await self._resolve(gateway_session_id, username)
        query = tl.get_history(channel.channel_id, channel.access_hash, limit)
        ids = tl.parse_message_ids(await self._invoke(gateway_session_id, "get_history", query))
        max_id = max(ids, default=None)
        if max_id is not None:
            query = tl.read_history(channel.channel_id, channel.access_hash, max_id)
            await self._invoke(gateway_session_id, "read_history", query)
        return HistoryRead(channel, len(ids), max_id)

    async def _resolve(self, gateway_session_id: int, username: str) -> tl.ChannelRef:
        name = parse_username(username)
        query = tl.resolve_username(name)
        return tl.parse_resolved_channel(
            await self._invoke(gateway_session_id, "resolve_username", query), name
        )

    # --- transport ----------------------------------------------------------------------

    async def _invoke(self, gateway_session_id: int, operation: str, query: str) -> Any:
        params = {
            "query": query,
            "retries": INVOKE_RETRIES,
            "timeout": INVOKE_TIMEOUT_S,
            "sleep_threshold": INVOKE_SLEEP_THRESHOLD_S,
        }
        payload = {"method": "invoke", "params": params}
        return await self._rpc(gateway_session_id, "invoke", operation, payload)

    async def _rpc(
        self, gateway_session_id: int, method: str, operation: str, payload: dict[str, Any]
    ) -> Any:
        path = f"/sessions/{_path_id(gateway_session_id)}/rpc/{method}"
        return await self._request(
            "POST", path, operation, payload, read=lambda body: rpc_result(body, self._secrets)
        )

    async def _request(
        self,
        method: str,
        path: str,
        operation: str,
        payload: dict[str, Any] | None = None,
        read: Callable[[Any], Any] = lambda body: body,
    ) -> Any:
        """One call with retries of transient failures; ``read`` turns the JSON body into
        the result or raises the ``GatewayError`` it describes."""
        clock, policy = self._clock, self._policy
        deadline = clock.monotonic() + policy.deadline_s
        failures = 0
        while True:
            started = clock.monotonic()
            try:
                result = read(
                    await self._attempt(method, path, operation, payload, deadline - started)
                )
            except _Transient as transient:
                self._record(operation, transient.outcome, started)
                failures += 1
                delay = max(policy.backoff_s(failures, self._rng), transient.retry_after_s)
                if failures >= policy.attempts or clock.monotonic() + delay >= deadline:
                    raise GatewayUnavailable(
                        f"{operation}: gateway unavailable after {failures} attempt(s), "
                        f"last: {transient}"
                    ) from None
                await clock.sleep(delay)
            except GatewayError as error:
                self._record(operation, type(error).__name__, started)
                raise
            else:
                self._record(operation, "ok", started)
                return result

    async def _attempt(
        self,
        method: str,
        path: str,
        operation: str,
        payload: dict[str, Any] | None,
        budget_s: float,
    ) -> Any:
        try:
            async with self._session().request(
                method,
                self._base + path,
                json=payload,
                timeout=self._timeout(budget_s),
                allow_redirects=False,
            ) as response:
                status, body = response.status, await response.read()
                retry_after_s = _retry_after_s(response.headers.get("retry-after", ""))
        except TimeoutError:
            raise _Transient("timeout", "timeout") from None
        except aiohttp.ClientError as exc:
            raise _Transient("connection_error", type(exc).__name__) from None
        if status == 429:
            raise _Transient("http_429", "HTTP 429", retry_after_s)
        if status >= 500:
            raise _Transient("http_5xx", f"HTTP {status}", retry_after_s)
        if status in (401, 403):
            self._auth_failed(operation, status)
        self._auth_ok()
        if status == 404:
            raise UnknownSession(f"{operation}: the gateway does not know this session")
        if status == 422:
            detail = excerpt(body.decode(errors="replace"), self._secrets)
            raise RequestRejected(f"{operation}: the gateway rejected the request: {detail}")
        if status >= 300:
            raise RpcFailed(f"{operation}: HTTP {status}", code=f"HTTP_{status}")
        try:
            return json.loads(body)
        except ValueError:
            raise _Transient("not_json", "the body is not JSON") from None

    def _auth_failed(self, operation: str, status: int) -> None:
        if not self.auth_failing:  # loudly once, not once per session
            log.error("the gateway refuses heatup's token (HTTP %s): check gateway.token", status)
        self.auth_failing = True
        raise GatewayAuthFailed(f"{operation}: the gateway refused the token (HTTP {status})")

    def _auth_ok(self) -> None:
        if self.auth_failing:
            log.info("the gateway accepts heatup's token again")
        self.auth_failing = False

    def _record(self, operation: str, outcome: str, started: float) -> None:
        seconds = self._clock.monotonic() - started
        if self._observe is not None:
            self._observe(operation, outcome, seconds)
        log.debug(
            "gateway %s: %s in %.0f ms",
            operation,
            outcome,
            seconds * 1000,
            extra={"fields": {"operation": operation, "gateway_outcome": outcome}},
        )


def _path_id(gateway_session_id: int) -> int:
    """A gateway session id checked before it goes into a URL: an ``int`` from 1 to 2**63-1
    (text is refused here; only admin input is parsed from text)."""
    if not isinstance(gateway_session_id, int):
        kind = type(gateway_session_id).__name__
        raise InvalidValue(f"gateway session id must be an int, got {kind}")
    return parse_gateway_id(gateway_session_id)


def _retry_after_s(value: str) -> float:
    return float(value) if value.isdigit() else 0.0
