"""The rules for values admins give heatup, in one place.

The CLI calls these before it writes; the daemon calls them on rows admins wrote by hand
(those may hold anything the database accepts, for example text in an integer column on
SQLite). Every rule failure is an ``InvalidValue`` whose message is one line naming the
field, the offending value and what is allowed.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Final

from heatup_daemon.errors import InvalidValue
from heatup_daemon.timing.schedule import IntervalSchedule, Schedule, parse_schedule

MAX_GATEWAY_ID: Final = 2**63 - 1
MAX_LABEL_LENGTH: Final = 200
MAX_JITTER_S: Final = 86400
MAX_CATEGORY_LENGTH: Final = 64
MAX_TITLE_LENGTH: Final = 128
MAX_DESCRIPTION_LENGTH: Final = 500

# The gateway's pattern for a public username, tightened as GATEWAY.md asks: a letter, then
# 3 to 31 letters, digits or underscores. Only text matching this ever enters a TL query.
USERNAME_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]{3,31}")

_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f]")


def show(value: object, limit: int = 60) -> str:
    """A short, printable rendering of an admin's value for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_gateway_id(value: object) -> int:
    """A gateway session id: an integer from 1 to 2**63-1 (digit strings are accepted)."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        number = int(value)
    if number is None or not 1 <= number <= MAX_GATEWAY_ID:
        raise InvalidValue(f"gateway_session_id must be a positive integer, got {show(value)}")
    return number


def parse_username(value: object) -> str:
    """A public channel username, returned canonical: lower case, without the ``@``."""
    text = value[1:] if isinstance(value, str) and value.startswith("@") else value
    if not isinstance(text, str) or not USERNAME_RE.fullmatch(text):
        raise InvalidValue(
            f"channel username {show(value)} is not a public username: @ then a letter and "
            "3 to 31 letters, digits or underscores"
        )
    return text.lower()


def handle(username: str) -> str:
    """How every output (API, CLI, logs, console) writes a channel: ``@username``. Inside
    heatup (the database, plans, gateway calls) a channel is its canonical username alone."""
    return f"@{username}"


def parse_timezone(value: object) -> zoneinfo.ZoneInfo:
    if isinstance(value, str) and value and len(value) <= 64:
        try:
            return zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    raise InvalidValue(f"timezone {show(value)} is not a known IANA time zone (e.g. Europe/Berlin)")


def parse_text(field: str, value: object, max_length: int) -> str | None:
    """Optional free text: at most ``max_length`` characters, no control characters."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidValue(f"{field} must be text, got {show(value)}")
    if len(value) > max_length:
        raise InvalidValue(f"{field} is {len(value)} characters long; at most {max_length}")
    if _CONTROL_RE.search(value):
        raise InvalidValue(f"{field} {show(value)} contains control characters")
    return value


def parse_jitter(value: object, schedule: Schedule) -> int:
    """Seconds of jitter: an integer >= 0, below an interval schedule's period.

    A cron schedule's period varies, so its jitter is only bounded by a day here and is
    clamped per slot at run time so that a jittered time never reaches the next nominal one.
    """
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidValue(f"jitter_seconds must be an integer >= 0, got {show(value)}")
    if isinstance(schedule, IntervalSchedule) and value >= schedule.seconds:
        raise InvalidValue(
            f"jitter_seconds {value} must be below the schedule's interval "
            f"({schedule.seconds} s, {schedule.text})"
        )
    if value > MAX_JITTER_S:
        raise InvalidValue(f"jitter_seconds {value} is above the maximum of {MAX_JITTER_S}")
    return value


# Account ages are counted from no earlier than Telegram's launch.
EARLIEST_ACCOUNT: Final = datetime(2013, 8, 1, tzinfo=UTC)


def parse_account_created(value: object, now: datetime) -> datetime:
    """When a session's Telegram account was created: an ISO date or date and time (UTC
    unless it says otherwise), from Telegram's launch (2013-08-01) to now."""
    moment: datetime | None = value if isinstance(value, datetime) else None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            moment = None
    if moment is None:
        raise InvalidValue(
            f"account creation time {show(value)} is not a date (e.g. 2025-03-01) or an ISO "
            "date and time"
        )
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if not EARLIEST_ACCOUNT <= moment <= now + timedelta(days=1):
        raise InvalidValue(
            f"account creation time {moment:%Y-%m-%d %H:%M}Z must lie between Telegram's "
            "launch (2013-08-01) and now"
        )
    return moment


@dataclass(frozen=True, slots=True)
class SessionSpec:
    """The admin-owned part of a ``sessions`` row, known to be usable."""

    gateway_session_id: int
    schedule: Schedule
    jitter_seconds: int
    timezone: zoneinfo.ZoneInfo
    label: str | None
    account_created_at: datetime | None = None

    @property
    def schedule_text(self) -> str:
        return self.schedule.text

    def columns(self, enabled: bool) -> dict[str, object]:
        """The admin columns of the ``sessions`` row that registers it."""
        return {
            "gateway_session_id": self.gateway_session_id,
            "label": self.label,
            "enabled": enabled,
            "schedule": self.schedule_text,
            "jitter_seconds": self.jitter_seconds,
            "timezone": self.timezone.key,
            "account_created_at": self.account_created_at,
        }


def validate_session(
    *,
    gateway_session_id: object,
    schedule: object,
    jitter_seconds: object,
    timezone: object,
    label: object,
) -> SessionSpec:
    """Decide whether a ``sessions`` row is usable; raise ``InvalidValue`` saying why not.

    This is the only place the rules for a session row live.
    """
    gateway_id = parse_gateway_id(gateway_session_id)
    if not isinstance(schedule, str):
        raise InvalidValue(f"schedule must be text, got {show(schedule)}")
    parsed = parse_schedule(schedule)
    return SessionSpec(
        gateway_session_id=gateway_id,
        schedule=parsed,
        jitter_seconds=parse_jitter(jitter_seconds, parsed),
        timezone=parse_timezone(timezone),
        label=parse_text("label", label, MAX_LABEL_LENGTH),
    )


# What an admin may change of a registered session (``heatup sessions edit``, the console).
EDITABLE: Final = ("schedule", "jitter_seconds", "timezone", "label", "account_created_at")


def validate_edit(
    current: Mapping[str, object], changes: Mapping[str, object | None], now: datetime
) -> SessionSpec:
    """A registered session's new admin columns: ``current`` (its row's fields) with the
    ``changes`` that are given (not None) applied, held to the rules of a new row. An empty
    label clears it."""
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise InvalidValue(f"{', '.join(unknown)} cannot be edited (only {', '.join(EDITABLE)})")
    merged = {name: current[name] for name in EDITABLE}
    merged.update({name: value for name, value in changes.items() if value is not None})
    spec = validate_session(
        gateway_session_id=current["gateway_session_id"],
        schedule=merged["schedule"],
        jitter_seconds=merged["jitter_seconds"],
        timezone=merged["timezone"],
        label=merged["label"] or None,
    )
    created = merged["account_created_at"]
    return replace(
        spec, account_created_at=None if created is None else parse_account_created(created, now)
    )


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """The admin-owned part of a ``channels`` row, known to be usable."""

    username: str
    title: str | None
    category: str | None
    description: str | None


def validate_channel(
    *, username: object, title: object, category: object, description: object
) -> ChannelSpec:
    """Decide whether a ``channels`` row is usable; raise ``InvalidValue`` saying why not."""
    return ChannelSpec(
        username=parse_username(username),
        title=parse_text("title", title, MAX_TITLE_LENGTH),
        category=parse_text("category", category, MAX_CATEGORY_LENGTH),
        description=parse_text("description", description, MAX_DESCRIPTION_LENGTH),
    )
