"""The registry: sessions and the channel pool (``db/registry.py``). Changes are not
audited here: the audit log is read through the console's port, which only the SQL store
serves."""

from __future__ import annotations

from heatup_daemon.config.sections import ChannelEntry
from heatup_daemon.errors import AlreadyExists
from heatup_daemon.records import ChannelView
from heatup_daemon.session import SessionRecord
from heatup_daemon.testing.memory.tables import SESSION_DEFAULTS, MemoryTables
from heatup_daemon.validation import ChannelSpec, SessionSpec, validate_channel
from heatup_daemon.views import CLI_AUTHOR, Author


class MemoryRegistry(MemoryTables):
    """The registry: sessions and the channel pool (``db/registry.py``)."""

    async def add_session(
        self, spec: SessionSpec, *, enabled: bool = True, by: Author = CLI_AUTHOR
    ) -> SessionRecord:
        self._check()
        if any(r["gateway_session_id"] == spec.gateway_session_id for r in self.sessions.values()):
            raise AlreadyExists(
                f"a session with gateway id {spec.gateway_session_id} is already registered"
            )
        session_id = self._next_id()
        self.sessions[session_id] = {
            **SESSION_DEFAULTS,
            **spec.columns(enabled),
            "created_at": self._clock.now(),
        }
        return self._record(session_id)

    async def remove_session(self, gateway_session_id: int, *, by: Author = CLI_AUTHOR) -> None:
        """Delete a session; its runs and ledger places stay, without it (SET NULL)."""
        self._check()
        session_id = self._by_gateway_id(gateway_session_id)
        del self.sessions[session_id]
        self.joined.pop(session_id, None)
        for run in list(self.runs.values()):
            if run.session_id == session_id:
                self._update(run.id, session_id=None)
        for join in self.ledger:
            if join["session_id"] == session_id:
                join["session_id"] = None

    async def list_sessions(self) -> list[SessionRecord]:
        self._check()
        return [self._record(session_id) for session_id in sorted(self.sessions)]

    async def get_session(self, gateway_session_id: int) -> SessionRecord:
        self._check()
        return self._record(self._by_gateway_id(gateway_session_id))

    async def add_channel(self, spec: ChannelSpec, *, by: Author = CLI_AUTHOR) -> ChannelView:
        self._check()
        if any(c["username"] == spec.username for c in self.channels.values()):
            raise AlreadyExists(f"channel @{spec.username} is already in the pool")
        channel_id = self._next_id()
        self.channels[channel_id] = {
            "username": spec.username,
            "title": spec.title,
            "category": spec.category,
            "description": spec.description,
            "enabled": True,
            "invalid_reason": None,
            "flagged_reason": None,
        }
        return self._channel(channel_id)

    async def seed_channels(self, entries: list[ChannelEntry]) -> int:
        if self.channels:
            return 0
        for entry in entries:
            await self.add_channel(
                validate_channel(
                    username=entry.username,
                    title=entry.title,
                    category=entry.category,
                    description=entry.description,
                )
            )
        return len(entries)

    async def list_channels(self) -> list[ChannelView]:
        self._check()
        views = [self._channel(channel_id) for channel_id in self.channels]
        return sorted(views, key=lambda view: str(view.username))

    async def check_channels(self) -> list[tuple[str, str | None]]:
        self._check()
        changed: list[tuple[str, str | None]] = []
        for channel_id, row in self.channels.items():
            reason = self._channel(channel_id).problem
            if reason != row["invalid_reason"]:
                row["invalid_reason"] = reason
                changed.append((str(row["username"]), reason))
        return changed
