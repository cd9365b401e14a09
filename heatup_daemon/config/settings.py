"""One typed, frozen settings object for the whole daemon.

Sources, lowest to highest precedence:

1. built-in defaults (the shipped ``config.toml`` states each of them);
2. a TOML file: ``--config``, else ``$HEATUP_CONFIG``, else ``/etc/heatup/config.toml`` if it
   exists;
3. environment variables ``HEATUP_<SECTION>__<KEY>`` (``HEATUP_NODE_NAME`` for top-level keys);
4. credential files named ``gateway.token``, ``llm.api_key``, ``api.token`` in systemd's
   ``$CREDENTIALS_DIRECTORY`` (``LoadCredential=`` in ``heatup.service``).

Secrets are refused in the TOML file: it is usually world-readable and kept in version control.
Reading the file, and showing the settings, is ``config.file``'s; each section is
``config.sections``'.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Self

from pydantic import (
    Field,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from sqlalchemy.engine import make_url

from heatup_daemon.config.sections import (
    CALL_SLACK_S,
    DEFAULT_CHANNELS,
    ENV_PREFIX,
    RENAMED_SCHEDULER_KEYS,
    RENEWAL_MARGIN_S,
    SECRET_KEYS,
    ApiSettings,
    ChannelEntry,
    DatabaseSettings,
    ExecutorSettings,
    GatewaySettings,
    HistorySettings,
    LLMSettings,
    PlannerSettings,
    PoolSettings,
    RampSettings,
    SchedulerSettings,
    ServiceSettings,
)
from heatup_daemon.errors import ConfigError
from heatup_daemon.ramp import JoinPolicy


class Settings(BaseSettings):
    """Everything heatup reads from its configuration. Build it with ``load_settings``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    node_name: str = Field(default_factory=socket.gethostname, min_length=1, max_length=128)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    planner: PlannerSettings = Field(default_factory=PlannerSettings)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    history: HistorySettings = Field(default_factory=HistorySettings)
    ramp: RampSettings = Field(default_factory=RampSettings)
    pool: PoolSettings = Field(default_factory=PoolSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    channels: tuple[ChannelEntry, ...] = Field(default_factory=lambda: DEFAULT_CHANNELS)

    @property
    def renamed_keys(self) -> list[str]:
        """A warning for each key given by a name it had before this release."""
        return [
            f"scheduler.{old} is now scheduler.{RENAMED_SCHEDULER_KEYS[old]}; the old name "
            "is read until the next release"
            for old in self.scheduler.old_names
        ]

    @property
    def call_budget_s(self) -> float:
        """The longest one action's gateway call may take, all its requests, retries and
        bodies included (the executor's deadline): a run's lease must last this much more
        before it may make one."""
        return self.gateway.retry_deadline_s + CALL_SLACK_S

    @model_validator(mode="after")
    def _a_live_lease_covers_a_call(self) -> Self:
        # A node renews its lease (stale_run_s long) every heartbeat_s; a run
        # may start a call only while the lease outlasts it.
        scheduler = self.scheduler
        needed = scheduler.heartbeat_s + self.call_budget_s + RENEWAL_MARGIN_S
        if scheduler.stale_run_s <= needed:
            raise ValueError(
                f"scheduler.stale_run_s ({scheduler.stale_run_s:g}) must exceed "
                f"scheduler.heartbeat_s ({scheduler.heartbeat_s:g}) + "
                f"gateway.retry_deadline_s ({self.gateway.retry_deadline_s:g}) + "
                f"{CALL_SLACK_S + RENEWAL_MARGIN_S:g} s, so that between two renewals a live "
                f"run's lease always covers the gateway call it makes: raise it above "
                f"{needed:g}"
            )
        return self

    @property
    def join_policy(self) -> JoinPolicy:
        return JoinPolicy(self.ramp.ramp, self.pool.max_joins_per_channel_per_hour)

    def secret_values(self) -> tuple[str, ...]:
        """Every secret of the configuration, to be masked wherever it might appear."""
        values = [
            secret.get_secret_value()
            for secret in (
                self.gateway.token,
                self.llm.api_key,
                self.api.token,
                self.api.read_token,
            )
            if secret is not None
        ]
        password = make_url(self.database.url).password
        if password:
            values.append(str(password))
        return tuple(values)

    @field_validator("channels")
    @classmethod
    def _unique_channels(cls, value: tuple[ChannelEntry, ...]) -> tuple[ChannelEntry, ...]:
        seen: set[str] = set()
        for entry in value:
            if entry.username in seen:
                raise ValueError(f"channel @{entry.username} is listed twice")
            seen.add(entry.username)
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file's values arrive as init arguments (its path is known only at run
        # time), so they rank lowest; credential files rank highest.
        return (CredentialsSource(settings_cls), env_settings, init_settings)


class CredentialsSource(PydanticBaseSettingsSource):
    """Secrets from files named by their dotted key in ``$CREDENTIALS_DIRECTORY``."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the whole directory

    def __call__(self) -> dict[str, Any]:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            return {}
        values: dict[str, Any] = {}
        for key in SECRET_KEYS:
            path = Path(directory) / key
            try:
                secret = path.read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                continue
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"credential file {path} cannot be read: {exc}") from None
            section, name = key.split(".")
            values.setdefault(section, {})[name] = secret
        return values
