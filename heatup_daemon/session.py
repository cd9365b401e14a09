"""A registered session: its row as read, its validated form, and the one rule of when it
may run.

- ``SessionRecord`` is a ``sessions`` row as the database holds it. Admins may write anything
  the database accepts, so admin-owned values are whatever was read, and a time heatup cannot
  read is kept as its text (``Stamp``): a bad value never breaks the query that read it.
- ``Session`` is a row heatup can use: every value validated, the gateway id an ``int``. The
  whole run path (claim, plan, execute, record) carries this one type.
- ``admit`` is the only definition of "may this session run now". Claims, API and CLI runs
  and the cancellation of runs in flight all ask it.
- The admin key (``admin_key_of``) is a row's admin-owned values as one text: heatup keeps
  the key it last applied, so a row whose key differs was inserted or edited since.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Final, TypeVar

from heatup_daemon.enums import Refusal, SessionState, Standing
from heatup_daemon.errors import InvalidState, InvalidValue, SessionNotRunnable
from heatup_daemon.timing.schedule import Schedule
from heatup_daemon.validation import parse_account_created, show, validate_session

# A time column's value as read: a time, nothing, or the text of a value that is not a time.
Stamp = datetime | str | None
# The time columns of a sessions row (each read as a ``Stamp``).
TIME_FIELDS: Final = (
    "account_created_at",
    "next_nominal_at",
    "next_run_at",
    "last_run_at",
    "cooldown_until",
    "flood_wait_at",
    "created_at",
)


PUBLIC_FIELDS: Final = (
    "gateway_session_id",
    "label",
    "enabled",
    "schedule",
    "jitter_seconds",
    "timezone",
    "account_created_at",
    "state",
    "state_reason",
    "invalid_reason",
    "next_run_at",
    "last_run_at",
    "cooldown_until",
    "created_at",
)


# What a new ``sessions`` row holds in the columns its registration leaves out: the
# schema's defaults, and heatup's own columns empty.
ROW_DEFAULTS: Final[Mapping[str, object]] = MappingProxyType(
    {
        "label": None,
        "enabled": True,
        "jitter_seconds": 0,
        "timezone": "UTC",
        "account_created_at": None,
        "state": SessionState.ACTIVE.value,
        "state_reason": None,
        "invalid_reason": None,
        "applied_key": None,
        "next_nominal_at": None,
        "next_run_at": None,
        "last_run_at": None,
        "cooldown_until": None,
        "flood_wait_at": None,
        "flood_wait_s": None,
    }
)


# The admin key's fields, in order: every admin-owned column, and ``state``, which an
# admin's ``sessions enable`` resets (``db.sessions.admin_key`` builds the key in SQL).
KEY_FIELDS: Final = (
    "gateway_session_id",
    "schedule",
    "jitter_seconds",
    "timezone",
    "enabled",
    "state",
    "label",
    "account_created_at",
)
KEY_SEPARATOR: Final = "\x1f"


def admin_key_of(values: Mapping[str, object]) -> str:
    """The admin key of a row given as values (the in-memory store's rows): each field's
    text, as ``db.sessions.admin_key`` builds it in SQL (nothing is empty, a boolean is
    on or off)."""

    def text(value: object) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "on" if value else "off"
        return str(value)

    return KEY_SEPARATOR.join(text(values[name]) for name in KEY_FIELDS)


def key_fields(key: str | None) -> dict[str, str]:
    """The fields of an admin key, by name (none for ``None``: never applied)."""
    if key is None:
        return {}
    return dict(zip(KEY_FIELDS, key.split(KEY_SEPARATOR, len(KEY_FIELDS) - 1), strict=False))


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A ``sessions`` row as read. ``key`` is the admin key now, ``applied_key`` the one
    heatup last applied (``db.sessions``): they differ when an admin edited the row since."""

    id: int
    gateway_session_id: object
    label: object
    enabled: object
    schedule: object
    jitter_seconds: object
    timezone: object
    account_created_at: Stamp
    state: object
    state_reason: str | None
    invalid_reason: str | None
    next_nominal_at: Stamp
    next_run_at: Stamp
    last_run_at: Stamp
    cooldown_until: Stamp
    flood_wait_at: Stamp
    flood_wait_s: object
    created_at: Stamp
    key: str
    applied_key: str | None

    def public(self) -> dict[str, object]:
        """The row's fields as admins see them (without heatup's bookkeeping)."""
        return {name: getattr(self, name) for name in PUBLIC_FIELDS}

    @property
    def edited(self) -> bool:
        """Inserted or edited by an admin since heatup last applied it."""
        return self.key != self.applied_key


@dataclass(frozen=True, slots=True)
class Session:
    """A session whose row heatup can use."""

    id: int
    gateway_session_id: int
    label: str | None
    schedule: Schedule
    jitter_s: int
    timezone: zoneinfo.ZoneInfo
    enabled: bool
    state: SessionState
    state_reason: str | None
    cooldown_until: datetime | None
    # When the Telegram account was created (the row's registration when not given).
    account_created_at: datetime

    def age_days(self, now: datetime) -> int:
        return age_days(self.account_created_at, now)


# A moment as a row gives it: a time, its text, or nothing.
T = TypeVar("T", bound=datetime | str | None)


def born_at(account_created_at: T | None, registered_at: T) -> T:
    """When an account was born: when it was created where the row says, else when the row
    was registered (``db.sessions.born_sql`` is the same rule in SQL)."""
    return registered_at if account_created_at is None else account_created_at


def age_days(born: datetime, now: datetime) -> int:
    """An account's age at ``now`` in whole days (0 before it was born)."""
    return max((now - born) // timedelta(days=1), 0)


def born_by(now: datetime, days: int) -> datetime:
    """The latest birth of an account ``days`` old or older at ``now``: one born by ``now``
    has ``age_days(born, now) >= days`` exactly when ``born <= born_by(now, days)``."""
    return now - timedelta(days=days)


# Times outside these years are not read as times: PostgreSQL's +-infinity arrive as the
# first and last representable instants, and arithmetic on them overflows.
FIRST_YEAR: Final = 1970
LAST_YEAR: Final = 2999


def read_time(value: Any) -> Stamp:
    """A time column's value as read: an aware UTC datetime, or the text of a value heatup
    cannot read as a time in range (never an error)."""
    if value is None:
        return None
    moment = value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
    if not isinstance(moment, datetime) or not FIRST_YEAR <= moment.year <= LAST_YEAR:
        return str(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def time_of(name: str, value: Stamp, error: type[InvalidValue] = InvalidState) -> datetime | None:
    """A time column's value; ``error`` (``InvalidState`` for heatup's own columns) names the
    column when heatup cannot read it."""
    if isinstance(value, str):
        raise error(f"{name} holds {show(value)}, which is not a UTC date and time")
    return value


def parse_enabled(value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise InvalidValue(f"enabled must be true or false (1 or 0 in SQLite), got {show(value)}")


def validate_record(record: SessionRecord, now: datetime) -> Session:
    """The ``Session`` of a row, or why the row is unusable: ``InvalidValue`` for an admin's
    value, ``InvalidState`` for a value in one of heatup's own columns."""
    spec = validate_session(
        gateway_session_id=record.gateway_session_id,
        schedule=record.schedule,
        jitter_seconds=record.jitter_seconds,
        timezone=record.timezone,
        label=record.label,
    )
    enabled = parse_enabled(record.enabled)
    account = time_of("account_created_at", record.account_created_at, InvalidValue)
    if account is not None:
        account = parse_account_created(account, now)
    try:
        state = SessionState(str(record.state))
    except ValueError:
        raise InvalidState(
            f"state must be active or needs_attention, got {show(record.state)}"
        ) from None
    for name in ("next_nominal_at", "next_run_at", "last_run_at", "flood_wait_at"):
        time_of(name, getattr(record, name))
    if record.flood_wait_s is not None and not (
        isinstance(record.flood_wait_s, int) and record.flood_wait_s >= 0
    ):
        raise InvalidState(f"flood_wait_s must be seconds >= 0, got {show(record.flood_wait_s)}")
    registered = time_of("created_at", record.created_at) or now
    return Session(
        id=record.id,
        gateway_session_id=spec.gateway_session_id,
        label=spec.label,
        schedule=spec.schedule,
        jitter_s=spec.jitter_seconds,
        timezone=spec.timezone,
        enabled=enabled,
        state=state,
        state_reason=record.state_reason,
        cooldown_until=time_of("cooldown_until", record.cooldown_until),
        account_created_at=born_at(account, registered),
    )


def standing(record: SessionRecord) -> Standing:
    """The row's ``Standing`` from its stored columns (``db.sessions.standing_sql`` is the
    same rule in SQL, for the queries that count and filter by it)."""
    if record.invalid_reason is not None:
        return Standing.INVALID
    if record.enabled is not True:
        return Standing.DISABLED
    if record.state != SessionState.ACTIVE:
        return Standing.NEEDS_ATTENTION
    return Standing.ACTIVE


def admit(record: SessionRecord, now: datetime) -> Session:
    """The session of ``record`` if it may run at ``now``: its standing is ``active``, its
    row is valid, and it is not cooling down. Otherwise ``SessionNotRunnable`` saying why
    (its ``refusal`` names the rule)."""
    gateway_id = record.gateway_session_id
    if record.invalid_reason is not None:
        raise SessionNotRunnable(
            f"session {show(gateway_id)} cannot run: its row is not usable: "
            f"{record.invalid_reason}",
            refusal=Refusal.INVALID,
        )
    try:
        session = validate_record(record, now)
    except InvalidValue as exc:
        raise SessionNotRunnable(
            f"session {show(gateway_id)} cannot run: its row is not usable: {exc}",
            refusal=Refusal.INVALID,
        ) from None
    verdict = standing(record)
    if verdict is Standing.DISABLED:
        raise SessionNotRunnable(
            f"session {gateway_id} cannot run: it is disabled", Refusal.DISABLED
        )
    if verdict is Standing.NEEDS_ATTENTION:
        reason = session.state_reason or "no reason recorded"
        raise SessionNotRunnable(
            f"session {gateway_id} cannot run: it needs attention ({reason})",
            Refusal.NEEDS_ATTENTION,
        )
    if session.cooldown_until is not None and session.cooldown_until > now:
        raise SessionNotRunnable(
            f"session {gateway_id} cannot run: it is cooling down until "
            f"{session.cooldown_until:%Y-%m-%d %H:%M:%S}Z",
            Refusal.COOLING_DOWN,
        )
    return session


def refusals_of(
    records: dict[int, SessionRecord], session_ids: frozenset[int], now: datetime
) -> dict[int, tuple[Refusal, str]]:
    """``session.admit``'s refusals of ``session_ids`` (a missing id: the row was deleted)."""
    refused = {
        sid: (Refusal.REMOVED, "the session was removed")
        for sid in session_ids
        if sid not in records
    }
    for record in records.values():
        try:
            admit(record, now)
        except SessionNotRunnable as exc:
            refused[record.id] = (exc.refusal, str(exc))
    return refused
