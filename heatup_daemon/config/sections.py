"""The settings' sections, each a typed, frozen model of one ``[section]`` of
``config.toml``, and the values they share (the database URL's rules, the secrets' keys).
``settings.Settings`` gathers them."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Final, Literal, Self

import httpx2
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from heatup_daemon.errors import InvalidValue
from heatup_daemon.pool import DEFAULT_POOL
from heatup_daemon.ramp import DEFAULT_STAGES, Ramp
from heatup_daemon.redact import redact
from heatup_daemon.validation import validate_channel

ENV_PREFIX: Final = "HEATUP_"
CONFIG_PATH_ENV: Final = "HEATUP_CONFIG"
SYSTEM_CONFIG_PATH: Final = Path("/etc/heatup/config.toml")
SECRET_KEYS: Final = ("gateway.token", "llm.api_key", "api.token", "api.read_token")
MASK: Final = "********"
MIN_API_TOKEN_LENGTH: Final = 16
# A name in api.allowed_hosts: a DNS name (lower case, no trailing dot) or an IP address.
HOST_NAME: Final = re.compile(
    r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
    r"|[0-9a-f:.]*:[0-9a-f:.]*"
)
# How long a SQLite write waits for another process's lock (an admin's SQL client).
DEFAULT_BUSY_TIMEOUT_MS: Final = 5000
# PostgreSQL: how long a connection may take to open, and a statement to run.
CONNECT_TIMEOUT_S: Final = 10
STATEMENT_TIMEOUT_S: Final = 30
# What a node's lease must keep beyond its renewal interval and a gateway call, for the
# renewal's own round trip. A renewal that comes later still is no danger: the fence before
# a call asks for one when the lease would not outlast the call.
RENEWAL_MARGIN_S: Final = 1.0
# Beyond gateway.retry_deadline_s, what a gateway call's end may take (its last attempt's
# timeouts are cut to the deadline; this is their rounding and the answer's handling).
CALL_SLACK_S: Final = 1.0

_DRIVERS: Final = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "postgresql+psycopg": "postgresql+psycopg",
}


def default_database_url() -> str:
    """``heatup.db`` in systemd's ``$STATE_DIRECTORY`` when set, else in the working directory."""
    state_dirs = os.environ.get("STATE_DIRECTORY", "")
    base = Path(state_dirs.split(":")[0]) if state_dirs else Path.cwd()
    return f"sqlite+aiosqlite:///{base / 'heatup.db'}"


def normalize_database_url(value: str) -> str:
    """Give the URL its async driver (``postgresql://`` means asyncpg) or raise ``ValueError``."""
    try:
        url = make_url(value)
    except ArgumentError:
        raise ValueError("not a database URL (e.g. postgresql://host/db)") from None
    driver = _DRIVERS.get(url.drivername)
    if driver is None:
        raise ValueError(
            f"unsupported database {url.drivername!r}; use sqlite:///PATH or postgresql://..."
        )
    return url.set(drivername=driver).render_as_string(hide_password=False)


def masked_database_url(value: str) -> str:
    """The URL without its password, wherever it is written (``user:pw@``, ``?password=``).
    A URL heatup cannot read is shown with all between its scheme and its host masked, or
    masked whole: a password typed into a malformed URL is still a password."""
    try:
        url: URL = make_url(value)
    except (ArgumentError, ValueError):
        scheme, separator, rest = value.partition("://")
        if not separator:
            return MASK
        host = rest.rpartition("@")[2] if "@" in rest else ""
        return f"{scheme}://{MASK}@{host}" if host else f"{scheme}://{MASK}"
    return redact(url.render_as_string(hide_password=True))


def _not_empty(value: SecretStr | None) -> SecretStr | None:
    """A secret given as empty (an empty variable, a credential file holding only a newline)
    is a mistake, not a missing secret: refuse it rather than run without one."""
    if value is not None and not value.get_secret_value().strip():
        raise ValueError("is empty: give the secret, or unset it")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Ranged(_Section):
    """A section with ``NAME_min_s`` and ``NAME_max_s`` keys for each of ``RANGES``: the
    least may not exceed the most."""

    SECTION: ClassVar[str]
    RANGES: ClassVar[tuple[str, ...]]

    @model_validator(mode="after")
    def _ranges(self) -> Self:
        for name in self.RANGES:
            low, high = getattr(self, f"{name}_min_s"), getattr(self, f"{name}_max_s")
            if low > high:
                raise ValueError(
                    f"{self.SECTION}.{name}_min_s ({low}) must not exceed "
                    f"{self.SECTION}.{name}_max_s ({high})"
                )
        return self


class DatabaseSettings(_Section):
    url: str = Field(default_factory=default_database_url)
    pool_size: int = Field(default=10, ge=1, le=200)
    sqlite_busy_timeout_ms: int = Field(default=DEFAULT_BUSY_TIMEOUT_MS, ge=0, le=600_000)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return normalize_database_url(value)

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @property
    def sqlite_path(self) -> Path | None:
        """The database file of a SQLite URL; ``None`` for other databases and ``:memory:``."""
        database = make_url(self.url).database if self.is_sqlite else None
        return Path(database) if database and database != ":memory:" else None


class GatewaySettings(_Section):
    base_url: str = "http://127.0.0.1:8081"
    token: SecretStr | None = None
    connect_timeout_s: float = Field(default=5.0, gt=0, le=300)
    read_timeout_s: float = Field(default=10.0, gt=0, le=600)
    max_connections: int = Field(default=100, ge=1, le=10_000)
    retry_attempts: int = Field(default=4, ge=1, le=20)
    retry_deadline_s: float = Field(default=45.0, gt=0, le=600)
    retry_backoff_initial_s: float = Field(default=0.5, ge=0, le=60)
    retry_backoff_max_s: float = Field(default=8.0, ge=0, le=600)

    _token = field_validator("token")(_not_empty)

    @model_validator(mode="after")
    def _deadline_leaves_room_for_a_retry(self) -> Self:
        if self.retry_attempts > 1 and self.retry_deadline_s <= self.read_timeout_s:
            raise ValueError(
                f"gateway.retry_deadline_s ({self.retry_deadline_s:g}) must exceed "
                f"gateway.read_timeout_s ({self.read_timeout_s:g}), or a request that hangs "
                "uses up every attempt's time and is never retried"
            )
        return self

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        try:
            url = httpx2.URL(value)
        except httpx2.InvalidURL:
            raise ValueError("not a URL") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value.rstrip("/")


class LLMSettings(_Section):
    base_url: str | None = None
    model: str = Field(default="gpt-4o-mini", min_length=1, max_length=200)
    api_key: SecretStr | None = None
    timeout_s: float = Field(default=20.0, gt=0, le=600)
    max_retries: int = Field(default=1, ge=0, le=10)
    temperature: float = Field(default=1.0, ge=0, le=2)
    response_format: Literal["json_schema", "json_object"] = "json_schema"
    daily_token_budget: int = Field(default=200_000, ge=0)
    breaker_failures: int = Field(default=3, ge=1, le=1000)
    breaker_cooloff_s: float = Field(default=300.0, ge=0, le=86400)

    _api_key = field_validator("api_key")(_not_empty)

    @property
    def configured(self) -> bool:
        """An LLM is used when it has an endpoint or a key; otherwise the fallback plans."""
        return self.base_url is not None or self.api_key is not None


class PlannerSettings(_Ranged):
    SECTION, RANGES = "planner", ("read", "idle")

    read_min_s: float = Field(default=5.0, ge=0, le=3600)
    read_max_s: float = Field(default=45.0, ge=0, le=3600)
    idle_min_s: float = Field(default=5.0, ge=0, le=3600)
    idle_max_s: float = Field(default=30.0, ge=0, le=3600)
    seed: int | None = None


class ExecutorSettings(_Ranged):
    SECTION, RANGES = "executor", ("delay", "long_pause")

    time_scale: float = Field(default=1.0, ge=0, le=100)
    delay_min_s: float = Field(default=3.0, ge=0, le=3600)
    delay_max_s: float = Field(default=10.0, ge=0, le=3600)
    long_pause_chance: float = Field(default=0.1, ge=0, le=1)
    long_pause_min_s: float = Field(default=5.0, ge=0, le=3600)
    long_pause_max_s: float = Field(default=10.0, ge=0, le=3600)


# The [scheduler] keys that ended in _seconds, as every other section's end in _s: the old
# names are read, with a warning, until the next release.
RENAMED_SCHEDULER_KEYS: Final = {
    f"{name}_seconds": f"{name}_s"
    for name in (
        "reconcile",
        "misfire_grace",
        "stale_run",
        "heartbeat",
        "dispatch_interval",
        "roll_up",
    )
}


class SchedulerSettings(_Section):
    reconcile_s: float = Field(default=10.0, gt=0, le=3600)
    misfire_grace_s: float = Field(default=300.0, ge=0, le=86400)
    max_concurrent_runs: int = Field(default=20_000, ge=1, le=100_000)
    stale_run_s: float = Field(default=120.0, gt=0, le=86400)
    heartbeat_s: float = Field(default=15.0, gt=0, le=3600)
    dispatch_interval_s: float = Field(default=1.0, gt=0, le=60)
    roll_up_s: float = Field(default=60.0, gt=0, le=3600)
    # The old names this section was given (``Settings.renamed_keys`` tells them).
    _old_names: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _read_old_names(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        old: tuple[str, ...] = ()
        if isinstance(data, Mapping):
            old = tuple(key for key in data if key in RENAMED_SCHEDULER_KEYS)
            values = dict(data)
            for key in old:
                value = values.pop(key)
                values.setdefault(RENAMED_SCHEDULER_KEYS[key], value)  # the new name wins
            data = values
        section = handler(data)
        section._old_names = old
        return section

    @property
    def old_names(self) -> tuple[str, ...]:
        return self._old_names


class RampSettings(_Section):
    """The most joins in any 24 hours, by the account's age: [first day, joins] pairs."""

    stages: tuple[tuple[int, int], ...] = DEFAULT_STAGES

    @field_validator("stages")
    @classmethod
    def _ascending_from_day_0(
        cls, value: tuple[tuple[int, int], ...]
    ) -> tuple[tuple[int, int], ...]:
        if not value or value[0][0] != 0:
            raise ValueError("must start at day 0, e.g. [[0, 1], [1, 2], [7, 5]]")
        days = [day for day, _ in value]
        if days != sorted(set(days)):
            raise ValueError("days must rise strictly, e.g. [[0, 1], [1, 2], [7, 5]]")
        if any(joins < 0 or joins > 1000 for _, joins in value):
            raise ValueError("joins per day must be between 0 and 1000")
        return value

    @property
    def ramp(self) -> Ramp:
        return Ramp(self.stages)


class PoolSettings(_Section):
    max_joins_per_channel_per_hour: int = Field(default=20, ge=0, le=100_000)


class HistorySettings(_Section):
    retention_days: int = Field(default=30, ge=1, le=3650)


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    token: SecretStr | None = None
    read_token: SecretStr | None = None
    auto_register: bool = False
    allowed_hosts: tuple[str, ...] = ()

    @field_validator("token", "read_token")
    @classmethod
    def _strong_token(cls, value: SecretStr | None) -> SecretStr | None:
        value = _not_empty(value)
        if value is not None and len(value.get_secret_value()) < MIN_API_TOKEN_LENGTH:
            raise ValueError(
                f"is shorter than {MIN_API_TOKEN_LENGTH} characters: too easy to guess"
            )
        return value

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names = []
        for entry in value:
            name = entry.strip().lower().rstrip(".")
            if not HOST_NAME.fullmatch(name):
                raise ValueError(
                    f"{entry!r} is not a host name or an IP address (give the name alone, "
                    "without a scheme, port or path)"
                )
            names.append(name)
        return tuple(names)

    @model_validator(mode="after")
    def _token_off_loopback(self) -> Self:
        if not self.is_loopback and self.token is None:
            raise ValueError(
                f"api.host {self.host!r} is not a loopback address, so api.token is required "
                "(set HEATUP_API__TOKEN or the credential file api.token)"
            )
        if self.read_token is not None and self.token is None:
            raise ValueError(
                "api.read_token is set but api.token is not: with no api.token every route "
                "is open, so a read-only token would guard nothing"
            )
        if self.read_token is not None and self.token is not None:
            if self.read_token.get_secret_value() == self.token.get_secret_value():
                raise ValueError("api.read_token must differ from api.token")
        return self


class ServiceSettings(_Section):
    stop_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class ChannelEntry(_Section):
    username: str
    title: str | None = None
    category: str | None = None
    description: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _valid(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        try:
            spec = validate_channel(
                username=data.get("username"),
                title=data.get("title"),
                category=data.get("category"),
                description=data.get("description"),
            )
        except InvalidValue as exc:
            raise ValueError(str(exc)) from None
        return {**data, "username": spec.username}


DEFAULT_CHANNELS: Final = tuple(
    ChannelEntry(username=username, title=title, category=category, description=description)
    for username, title, category, description in DEFAULT_POOL
)
