"""The sandbox's small world: sessions, channels and Telegram's limits.

A world comes from a TOML or JSON file (``heatup sandbox --world FILE``) or, without one, is
the default world: healthy sessions 1-1000; one deleted session per delete reason at
9001-9005; a frozen one at 9100; sessions whose calls fail with a lost-session error text at
9201-9204; the built-in channel pool (each with message history), plus a private, an
invite-only, a nonexistent, an invalid and a broken channel.

File format (TOML shown; JSON has the same structure)::

    [limits]
    flood_joins = 5          # joins allowed per session within flood_window_s ...
    flood_window_s = 60.0
    flood_wait_s = 73        # ... the next one gets FLOOD_WAIT for this long
    max_channels = 500       # joined channels per session before CHANNELS_TOO_MUCH

    [[sessions]]
    ids = "1-100"            # or: id = 7
    joined = ["telegram"]    # optional
    [[sessions]]
    id = 9001
    deleted = "REVOKED"      # or: frozen = true, or: error = "AUTH_KEY_UNREGISTERED"

    [[channels]]
    username = "telegram"
    kind = "public"          # public | private | invite_only | nonexistent | invalid | broken
    messages = 40
"""

from __future__ import annotations

import json
import tomllib
import zlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from heatup_daemon.errors import InvalidValue
from heatup_daemon.pool import DEFAULT_POOL
from heatup_daemon.validation import parse_gateway_id, parse_username

CHANNEL_KINDS: Final = ("public", "private", "invite_only", "nonexistent", "invalid", "broken")
DELETE_REASONS: Final = (
    "REVOKED",
    "DEACTIVATED",
    "AUTH_KEY_UNREGISTERED",
    "AUTH_KEY_DUPLICATED",
    "PASSWORD_NEEDED",
)
GONE_ERRORS: Final = (
    "AUTH_KEY_UNREGISTERED",
    "SESSION_REVOKED",
    "USER_DEACTIVATED",
    "USER_DEACTIVATED_BAN",
)
# A world is expanded in memory (about 650 bytes a session): room for a two-million pool.
MAX_SESSIONS: Final = 5_000_000


@dataclass(frozen=True, slots=True)
class Limits:
    flood_joins: int = 5
    flood_window_s: float = 60.0
    flood_wait_s: int = 73
    max_channels: int = 500


@dataclass(frozen=True, slots=True)
class SessionSpec:
    id: int
    deleted: str | None = None
    frozen: bool = False
    error: str | None = None
    joined: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    username: str
    kind: str = "public"
    messages: int = 30
    title: str = ""

    @property
    def channel_id(self) -> int:
        return 1_000_000_000 + zlib.crc32(self.username.encode())

    @property
    def access_hash(self) -> int:
        return zlib.crc32(self.username.encode()[::-1]) * 1_000_003 - 2**40


@dataclass(frozen=True, slots=True)
class World:
    limits: Limits
    sessions: tuple[SessionSpec, ...]
    channels: tuple[ChannelSpec, ...]


@dataclass(slots=True)
class SessionState:
    """A session as the sandbox's run changes it."""

    spec: SessionSpec
    joined: set[str]
    join_times: deque[float] = field(default_factory=deque)
    flood_until: float = 0.0
    idle: bool = False
    read_up_to: dict[str, int] = field(default_factory=dict)


def default_world() -> World:
    sessions = [SessionSpec(uid) for uid in range(1, 1001)]
    sessions += [SessionSpec(9001 + i, deleted=r) for i, r in enumerate(DELETE_REASONS)]
    sessions.append(SessionSpec(9100, frozen=True))
    sessions += [SessionSpec(9201 + i, error=code) for i, code in enumerate(GONE_ERRORS)]
    channels = [
        ChannelSpec(username, "public", 20 + zlib.crc32(username.encode()) % 40, title)
        for username, title, _category, _description in DEFAULT_POOL
    ]
    channels += [
        ChannelSpec("privatechan", "private", 10, "A private channel"),
        ChannelSpec("inviteonly", "invite_only", 10, "Join by request"),
        ChannelSpec("nosuchchannel", "nonexistent"),
        ChannelSpec("badusername", "invalid"),
        ChannelSpec("brokenchan", "broken", 10, "A channel Telegram calls invalid"),
    ]
    return World(Limits(), tuple(sessions), tuple(channels))


def load_world(path: Path) -> World:
    """Read a world file, or raise ``InvalidValue`` naming the file and what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidValue(f"world file {path}: {exc}") from None
    try:
        return parse_world(data)
    except (InvalidValue, TypeError, ValueError) as exc:
        raise InvalidValue(f"world file {path}: {exc}") from None


def parse_world(data: Any) -> World:
    if not isinstance(data, dict):
        raise InvalidValue("a world is a table with limits, sessions and channels")
    unknown = set(data) - {"limits", "sessions", "channels"}
    if unknown:
        raise InvalidValue(f"unknown keys {sorted(unknown)}")
    limits = Limits(**data.get("limits", {}))
    sessions: list[SessionSpec] = []
    for entry in data.get("sessions", []):
        sessions.extend(_sessions(dict(entry)))
    if len({s.id for s in sessions}) != len(sessions):
        raise InvalidValue("a session id is listed twice")
    channels = tuple(_channel(dict(entry)) for entry in data.get("channels", []))
    return World(limits, tuple(sessions), channels)


def _sessions(entry: dict[str, Any]) -> list[SessionSpec]:
    if "ids" in entry:
        first, _, last = str(entry.pop("ids")).partition("-")
        ids = range(parse_gateway_id(first), parse_gateway_id(last or first) + 1)
    else:
        uid = parse_gateway_id(entry.pop("id", None))
        ids = range(uid, uid + 1)
    if len(ids) > MAX_SESSIONS:
        raise InvalidValue(f"at most {MAX_SESSIONS} sessions")
    deleted = entry.pop("deleted", None)
    if deleted is not None and deleted not in DELETE_REASONS:
        raise InvalidValue(f"deleted must be one of {DELETE_REASONS}, got {deleted!r}")
    joined = tuple(parse_username(u) for u in entry.pop("joined", ()))
    frozen = bool(entry.pop("frozen", False))
    error = entry.pop("error", None)
    if entry:
        raise InvalidValue(f"unknown session keys {sorted(entry)}")
    return [SessionSpec(uid, deleted, frozen, error, joined) for uid in ids]


def _channel(entry: dict[str, Any]) -> ChannelSpec:
    kind = entry.get("kind", "public")
    if kind not in CHANNEL_KINDS:
        raise InvalidValue(f"channel kind must be one of {CHANNEL_KINDS}, got {kind!r}")
    return ChannelSpec(
        username=parse_username(entry.get("username")),
        kind=kind,
        messages=int(entry.get("messages", 30)),
        title=str(entry.get("title", "")),
    )
