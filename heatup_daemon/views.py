"""What the console and the CLI read and what the audit log keeps: the session list and
its filters, the activity page's runs and hourly figures, an admin change's author and
entry, and what an import did. ``records`` holds what the running parts exchange."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from heatup_daemon.enums import (
    Actor,
    RunStatus,
    Standing,
    Surface,
    Trigger,
)
from heatup_daemon.records import ChannelView, SessionCounts
from heatup_daemon.session import SessionRecord
from heatup_daemon.validation import EDITABLE

# An action's row written before its gateway call (``RunRecorder.start_call``): the outcome
# a crash would leave. While its run lasts, the call is under way.


@dataclass(frozen=True, slots=True)
class SessionSearch:
    """The session list's filters: ``text`` a gateway id or the start of a label; a standing."""

    text: str = ""
    standing: Standing | None = None


EVERY_SESSION: Final = SessionSearch()


@dataclass(frozen=True, slots=True)
class RunFilter:
    """The activity page's filters; each None matches every run."""

    status: RunStatus | None = None
    trigger: Trigger | None = None
    node: str | None = None
    gateway_session_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Overview:
    """The pool at a glance: ``sessions`` as ``SchedulingStore.counts`` gives them, when
    they were counted, and the next time a session is due (the runs over time are
    ``Activity``)."""

    sessions: SessionCounts
    counted_at: datetime
    next_due_at: datetime | None


@dataclass(frozen=True, slots=True)
class Activity:
    """The history by the hour (UTC), as last counted (``db.activity``): for each hour
    counted, its runs by status and their actions by outcome; an hour not counted yet is
    absent. ``counted_at``: the latest count, None before the first."""

    runs: dict[datetime, dict[str, int]]
    actions: dict[datetime, dict[str, int]]
    counted_at: datetime | None


@dataclass(frozen=True, slots=True)
class SessionLine:
    """A session in the console's list, with its latest run."""

    record: SessionRecord
    last_status: RunStatus | None
    last_started_at: datetime | None


@dataclass(frozen=True, slots=True)
class SessionPage:
    """A page of the session list: its lines, how many sessions match (at most a cap, and
    whether more do), and whether lines follow this page."""

    lines: tuple[SessionLine, ...]
    total: int
    more_than_total: bool = False
    more: bool = False


@dataclass(frozen=True, slots=True)
class ChannelLine:
    """A pool channel, how many sessions are its members (as last counted, ``db.activity``),
    and its joins of the last hour (the pool's pace counts these) and day."""

    view: ChannelView
    members: int
    joins_last_hour: int
    joins_last_24h: int


# A session's columns the audit log keeps before and after a change: what admins set (an
# edit, an enable or disable, which also brings a session back from needing attention).
AUDITED_SESSION_FIELDS: Final = (*EDITABLE, "enabled", "state")
AUDITED_CHANNEL_FIELDS: Final = ("title", "category", "description", "enabled")


@dataclass(frozen=True, slots=True)
class Author:
    """Who makes an admin's change, and where (the audit log's ``actor`` and ``via``)."""

    via: Surface
    actor: Actor


CLI_AUTHOR: Final = Author(Surface.CLI, Actor.CLI)


def audited(record: object, fields: tuple[str, ...]) -> dict[str, Any]:
    """The audited ``fields`` of a session record or channel view, as JSON values."""
    return jsonable({name: getattr(record, name) for name in fields})


def jsonable(values: Mapping[str, object]) -> dict[str, Any]:
    """``values`` as the audit log stores them: times as ISO text."""
    return {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name, value in values.items()
    }


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """A row of the audit log."""

    id: int
    at: datetime
    via: str
    actor: str
    action: str
    gateway_session_id: int | None
    channel: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    @property
    def changed(self) -> list[tuple[str, object, object]]:
        """``(field, before, after)`` for each field the change set or altered."""
        before, after = self.before or {}, self.after or {}
        names = list(dict.fromkeys([*before, *after]))
        return [
            (name, before.get(name), after.get(name))
            for name in names
            if before.get(name) != after.get(name)
        ]


@dataclass(frozen=True, slots=True)
class Imported:
    """What an import did: the gateway ids it found registered, and how many it wrote."""

    registered: set[int]
    written: int
