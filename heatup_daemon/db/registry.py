"""Registry operations: the sessions admins register and the channel pool.

Callers get frozen views, never ORM objects, so nothing outside the repository can lazily
load or accidentally write.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from heatup_daemon.config import ChannelEntry
from heatup_daemon.db.models import ChannelRow, SessionRow
from heatup_daemon.db.store import Store, rows_affected, view_of
from heatup_daemon.errors import AlreadyExists, InvalidValue, NotFound
from heatup_daemon.validation import ChannelSpec, SessionSpec, validate_channel


@dataclass(frozen=True, slots=True)
class SessionView:
    id: int
    # An integer for every usable row; a row written by hand on SQLite may hold other text.
    gateway_session_id: int | str
    label: str | None
    enabled: bool
    schedule: str
    jitter_seconds: int
    timezone: str
    state: str
    state_reason: str | None
    invalid_reason: str | None
    next_run_at: datetime | None
    last_run_at: datetime | None
    cooldown_until: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, row: SessionRow) -> SessionView:
        return view_of(cls, row, enabled=bool(row.enabled))


@dataclass(frozen=True, slots=True)
class ChannelView:
    id: int
    username: str
    title: str | None
    category: str | None
    description: str | None
    enabled: bool
    invalid_reason: str | None
    flagged_reason: str | None

    @classmethod
    def of(cls, row: ChannelRow) -> ChannelView:
        return view_of(cls, row, enabled=bool(row.enabled))


class RegistryStore(Store):
    """The admin-owned registry: sessions and the channel pool."""

    # --- sessions -------------------------------------------------------------------

    async def add_session(self, spec: SessionSpec, *, enabled: bool = True) -> SessionView:
        row = SessionRow(
            gateway_session_id=spec.gateway_session_id,
            label=spec.label,
            enabled=enabled,
            schedule=spec.schedule_text,
            jitter_seconds=spec.jitter_seconds,
            timezone=spec.timezone.key,
        )
        try:
            async with self._transaction() as db:
                db.add(row)
        except IntegrityError:
            raise AlreadyExists(
                f"a session with gateway id {spec.gateway_session_id} is already registered"
            ) from None
        return await self.get_session(spec.gateway_session_id)

    async def list_sessions(self) -> list[SessionView]:
        async with self._transaction() as db:
            rows = await db.scalars(select(SessionRow).order_by(SessionRow.id))
            return [SessionView.of(row) for row in rows]

    async def get_session(self, gateway_session_id: int) -> SessionView:
        async with self._transaction() as db:
            row = await db.scalar(
                select(SessionRow).where(SessionRow.gateway_session_id == gateway_session_id)
            )
            if row is None:
                raise NotFound(f"no session with gateway id {gateway_session_id} is registered")
            return SessionView.of(row)

    async def set_session_enabled(self, gateway_session_id: int, enabled: bool) -> SessionView:
        """Enable or disable a session. Enabling also clears ``needs_attention``: an admin's
        re-enable is how a session that lost its account or got frozen comes back."""
        values: dict[str, object] = {"enabled": enabled}
        if enabled:
            values.update(state="active", state_reason=None)
        async with self._transaction() as db:
            result = await db.execute(
                update(SessionRow)
                .where(SessionRow.gateway_session_id == gateway_session_id)
                .values(**values)
            )
        if rows_affected(result) == 0:
            raise NotFound(f"no session with gateway id {gateway_session_id} is registered")
        return await self.get_session(gateway_session_id)

    async def remove_session(self, gateway_session_id: int) -> None:
        """Delete a session; its runs stay in the history (their ``session_id`` is nulled)."""
        async with self._transaction() as db:
            result = await db.execute(
                delete(SessionRow).where(SessionRow.gateway_session_id == gateway_session_id)
            )
        if rows_affected(result) == 0:
            raise NotFound(f"no session with gateway id {gateway_session_id} is registered")

    # --- channels -------------------------------------------------------------------

    async def add_channel(self, spec: ChannelSpec) -> ChannelView:
        row = ChannelRow(
            username=spec.username,
            title=spec.title,
            category=spec.category,
            description=spec.description,
        )
        try:
            async with self._transaction() as db:
                db.add(row)
        except IntegrityError:
            raise AlreadyExists(f"channel @{spec.username} is already in the pool") from None
        return ChannelView.of(row)

    async def list_channels(self) -> list[ChannelView]:
        async with self._transaction() as db:
            rows = await db.scalars(select(ChannelRow).order_by(ChannelRow.username))
            return [ChannelView.of(row) for row in rows]

    async def set_channel_enabled(self, username: str, enabled: bool) -> None:
        async with self._transaction() as db:
            result = await db.execute(
                update(ChannelRow).where(ChannelRow.username == username).values(enabled=enabled)
            )
        if rows_affected(result) == 0:
            raise NotFound(f"channel @{username} is not in the pool")

    async def seed_channels(self, entries: Iterable[ChannelEntry]) -> int:
        """Fill an empty pool from the configuration; return how many were added.

        Only an empty ``channels`` table is seeded: once it holds rows, admins own it, and
        a channel they removed does not come back on the next start.
        """
        async with self._transaction() as db:
            if await db.scalar(select(func.count()).select_from(ChannelRow)):
                return 0
            rows = [
                ChannelRow(
                    username=entry.username,
                    title=entry.title,
                    category=entry.category,
                    description=entry.description,
                )
                for entry in entries
            ]
            db.add_all(rows)
            return len(rows)

    async def check_channels(self) -> list[tuple[str, str | None]]:
        """Validate every pool row (admins may write them by hand); store each verdict that
        changed in ``invalid_reason`` and return those (username, reason) pairs."""
        changed: list[tuple[str, str | None]] = []
        async with self._transaction() as db:
            for row in await db.scalars(select(ChannelRow)):
                reason = channel_problem(row)
                if reason != row.invalid_reason:
                    row.invalid_reason = reason
                    changed.append((str(row.username), reason))
        return changed


def channel_problem(row: ChannelRow) -> str | None:
    """Why a ``channels`` row cannot be used, or ``None``. Usernames are stored canonical
    (lower case, no ``@``): plans, joins and the history name channels that way."""
    try:
        spec = validate_channel(
            username=row.username,
            title=row.title,
            category=row.category,
            description=row.description,
        )
    except InvalidValue as exc:
        return str(exc)
    if spec.username != row.username:
        return f"username {row.username!r} must be stored as {spec.username!r}"
    return None
