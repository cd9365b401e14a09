"""The session gateway: the ``Gateway`` protocol heatup's executor speaks, and its HTTP
implementation (``client.HttpGateway``). Errors are in ``heatup_daemon.errors``."""

from __future__ import annotations

from typing import Protocol

from heatup_daemon.gateway.client import HistoryRead, HttpGateway
from heatup_daemon.gateway.tl import ChannelRef

__all__ = ["ChannelRef", "Gateway", "HistoryRead", "HttpGateway"]


class Gateway(Protocol):
    """What heatup asks of the gateway. Every method validates its arguments before any
    request (``InvalidValue``) and raises a ``GatewayError`` subclass for each failing
    outcome of GATEWAY.md's table; transient failures are retried inside."""

    @property
    def auth_failing(self) -> bool:
        """Whether the gateway refused heatup's token on the last call (``/readyz``)."""

    async def aclose(self) -> None:
        """Release the connections (once, at the end)."""

    async def join_channel(self, gateway_session_id: int, username: str) -> None:
        """Join a public channel."""

    async def is_member(self, gateway_session_id: int, username: str) -> bool | None:
        """Whether the session is a member of the channel (read-only); ``None``: unknown."""

    async def browse_dialogs(self, gateway_session_id: int, limit: int = ...) -> int:
        """Fetch the dialog list; return its length."""

    async def read_history(
        self, gateway_session_id: int, username: str, limit: int = ...
    ) -> HistoryRead:
        """Resolve a channel, fetch its recent messages and mark them read."""
