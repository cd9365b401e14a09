"""The session gateway of the simulated world: one ``GatewayWorld`` (the sessions, their
channel memberships, every call made), seen by each node through a ``SimGateway``.

A ``SimGateway`` keeps heatup's ``Gateway`` protocol and the shape of the HTTP client
behind it (``gateway.client.HttpGateway``): a join is one request, ``is_member`` and
``browse_dialogs`` one each, ``read_history`` three (resolve, history, mark read). Each
request lasts what the real client may let it last, and no more: a fast answer, a slow one up
to ``gateway.retry_deadline_s`` (the client's retries and its deadline), or a transient
failure that outlived the retries (``GatewayUnavailable``) before or after the gateway did
the work. Telegram's own answers (flood waits, a private channel, a deleted account, too many
channels) come at the rates the scenario draws.

Every operation is logged with the run and the action it was made for (from heatup's log
context), the node and the virtual times, and each request with whether the gateway acted on
it: what the invariants hold the store to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from heatup_daemon.errors import (
    ChannelUnavailable,
    FloodWait,
    GatewayUnavailable,
    SessionGone,
    TooManyChannels,
)
from heatup_daemon.gateway import ChannelRef, HistoryRead
from tests.sim.faults import Fault, Faults
from tests.sim.loop import log_fields

# The requests each operation makes, as HttpGateway makes them.
REQUESTS: Final = {
    "join_channel": ("join_chat",),
    "is_member": ("resolve_username",),
    "browse_dialogs": ("get_dialogs",),
    "read_history": ("resolve_username", "get_history", "read_history"),
}
FAST_S: Final = (0.02, 0.4)
MAX_CHANNELS: Final = 500


@dataclass(slots=True)
class Operation:
    """One call of the ``Gateway`` protocol."""

    node: str
    run: int | None
    seq: int | None
    root: int  # the task that runs the run (``cluster.Tasks.root``)
    session: int  # gateway id
    op: str
    channel: str | None
    started_s: float
    ended_s: float | None = None
    result: str = "open"  # ok, an error's class name, or cancelled
    member: bool | None = None  # is_member's answer
    acted: bool = False  # the gateway did the work of at least one request
    requests: int = 0
    joined: bool = False  # a join_chat request took effect


@dataclass(slots=True)
class Request:
    operation: Operation
    name: str
    started_s: float
    ended_s: float = 0.0
    acted: bool = False


@dataclass(frozen=True, slots=True)
class GatewayRates:
    """How often Telegram says no, per request."""

    flood_p: float = 0.0
    too_many_p: float = 0.0


@dataclass
class GatewayWorld:
    """What the gateway knows: memberships, and every operation it was asked for."""

    time: Callable[[], float]
    root: Callable[[], int]
    rates: GatewayRates = field(default_factory=GatewayRates)
    deleted: set[int] = field(default_factory=set)  # accounts gone
    private: set[str] = field(default_factory=set)  # channels no session may use
    members: dict[int, set[str]] = field(default_factory=dict)
    operations: list[Operation] = field(default_factory=list)
    by_action: dict[tuple[int | None, int | None], list[Operation]] = field(default_factory=dict)
    requests: int = 0
    slow_until_s: float = -1.0  # a brownout: every request slow until then
    on_open: Callable[[Request], None] = lambda request: None
    on_close: Callable[[Request], None] = lambda request: None


class SimGateway:
    """One node's gateway client."""

    def __init__(
        self,
        world: GatewayWorld,
        node: object,
        faults: Faults,
        deadline_s: float,
        trace: Callable[..., None],
    ) -> None:
        self._world = world
        self._node = node
        self._faults = faults
        self._deadline_s = deadline_s
        self._trace = trace
        self.auth_failing = False

    async def aclose(self) -> None:
        pass

    async def join_channel(self, gateway_session_id: int, username: str) -> None:
        await self._operation("join_channel", gateway_session_id, username)

    async def is_member(self, gateway_session_id: int, username: str) -> bool | None:
        operation = await self._operation("is_member", gateway_session_id, username)
        return operation.member

    async def browse_dialogs(self, gateway_session_id: int, limit: int = 20) -> int:
        await self._operation("browse_dialogs", gateway_session_id, None)
        return len(self._world.members.get(gateway_session_id, ()))

    async def read_history(
        self, gateway_session_id: int, username: str, limit: int = 20
    ) -> HistoryRead:
        await self._operation("read_history", gateway_session_id, username)
        return HistoryRead(ChannelRef(1, 1), 3, 3)

    async def _operation(self, op: str, session: int, channel: str | None) -> Operation:
        world = self._world
        if getattr(self._node, "dead", False):
            raise asyncio.CancelledError
        context = log_fields()
        run, seq = context.get("run"), context.get("action")
        operation = Operation(
            str(getattr(self._node, "name", "?")),
            run,
            seq,
            world.root(),
            session,
            op,
            channel,
            world.time(),
        )
        world.operations.append(operation)
        world.by_action.setdefault((run, seq), []).append(operation)
        try:
            for name in REQUESTS[op]:
                await self._request(operation, name)
        except asyncio.CancelledError:
            operation.result = "cancelled"
            raise
        except Exception as exc:
            operation.result = type(exc).__name__
            raise
        else:
            operation.result = "ok"
        finally:
            operation.ended_s = world.time()
            self._trace(
                operation.node, "gw", op, session, channel, run, seq, operation.result,
                operation.acted,
            )  # fmt: skip
        return operation

    async def _request(self, operation: Operation, name: str) -> None:
        world, faults = self._world, self._faults
        rng = faults.rng
        fault = faults.draw()
        request = Request(operation, name, world.time())
        operation.requests += 1
        world.requests += 1
        world.on_open(request)
        acts_first = fault is Fault.LOSE or (fault is Fault.TIMEOUT and rng.random() < 0.5)
        try:
            if fault is Fault.YIELD:
                for _ in range(rng.randint(1, 4)):
                    await asyncio.sleep(0)
            if acts_first:
                self._act(request)
            await asyncio.sleep(self._latency_s(fault))
            if fault in (Fault.FAIL, Fault.LOSE, Fault.TIMEOUT):
                raise GatewayUnavailable(f"{name}: gateway unavailable after 4 attempt(s)")
            self._refusal(operation, name)
            if not request.acted:
                self._act(request)
        except asyncio.CancelledError:
            if not request.acted and rng.random() < 0.5:  # the request was on its way
                self._act(request)
            raise
        finally:
            request.ended_s = world.time()
            world.on_close(request)

    def _latency_s(self, fault: Fault | None) -> float:
        rng, deadline_s = self._faults.rng, self._deadline_s
        if self._world.time() < self._world.slow_until_s:
            return rng.uniform(deadline_s / 2, deadline_s)
        if fault is Fault.SLOW or fault is Fault.FAIL or fault is Fault.LOSE:
            return rng.uniform(0, deadline_s)
        if fault is Fault.TIMEOUT:
            return deadline_s
        if fault is Fault.DELAY:
            return rng.uniform(0, self._faults.rates.delay_s)
        return rng.uniform(*FAST_S)

    def _refusal(self, operation: Operation, name: str) -> None:
        """Telegram's answer when it is not yes: raised before the gateway acts."""
        world, rng = self._world, self._faults.rng
        if operation.session in world.deleted:
            raise SessionGone("deleted", f"{name}: the account is deleted")
        if operation.channel in world.private and name in ("join_chat", "resolve_username"):
            raise ChannelUnavailable(f"{name}: the channel is private", code="CHANNEL_PRIVATE")
        if self._faults.weather.calm:
            return
        if rng.random() < world.rates.flood_p:
            raise FloodWait(rng.choice((30, 120, 600)), f"{name}: FLOOD_WAIT")
        joined = world.members.get(operation.session, set())
        if name == "join_chat" and (
            len(joined) >= MAX_CHANNELS or rng.random() < world.rates.too_many_p
        ):
            raise TooManyChannels(f"{name}: CHANNELS_TOO_MUCH")

    def _act(self, request: Request) -> None:
        """The gateway does what the request asks."""
        request.acted = True
        operation = request.operation
        operation.acted = True
        members = self._world.members.setdefault(operation.session, set())
        if request.name == "join_chat" and operation.channel is not None:
            members.add(operation.channel)
            operation.joined = True
        elif request.name == "resolve_username" and operation.op == "is_member":
            operation.member = operation.channel in members
