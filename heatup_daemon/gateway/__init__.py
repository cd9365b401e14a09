"""The session gateway: the ``Gateway`` protocol heatup's executor speaks, and its HTTP
implementation (``client.HttpGateway``). Errors are in ``heatup_daemon.errors``."""

from __future__ import annotations

from typing import Protocol

from heatup_daemon.gateway.client import HistoryRead, HttpGateway, SessionInfo
from heatup_daemon.gateway.tl import ChannelRef

__all__ = ["ChannelRef", "Gateway", "HistoryRead", "HttpGateway", "SessionInfo"]


class Gateway(Protocol):
    """What heatup asks of the gateway. Every method validates its arguments before any
    request (``InvalidValue``) and raises a ``GatewayError`` subclass for each failing
    outcome of GATEWAY.md's table; transient failures are retried inside."""

    async def session_info(self, uid: int) -> SessionInfo:
        """The session's status facts (never its secrets)."""

    async def join_channel(self, uid: int, username: str) -> None:
        """Join a public channel."""

    async def browse_dialogs(self, uid: int, limit: int = ...) -> int:
        """Fetch the dialog list; return its length."""

    async def resolve_channel(self, uid: int, username: str) -> ChannelRef:
        """Resolve a public username to its channel."""

    async def read_history(self, uid: int, username: str, limit: int = ...) -> HistoryRead:
        """Resolve a channel, fetch its recent messages and mark them read."""

    async def set_idle(self, uid: int, idle: bool) -> None:
        """Mark the session idle or busy in the gateway."""
