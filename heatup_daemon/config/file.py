"""Reading the settings and showing them: the TOML file (secrets refused in it), every
source merged into ``config.Settings``, a refused value told key by key (a credential
masked), and the effective settings as ``heatup check-config`` shows them."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError

from heatup_daemon.config.sections import (
    CONFIG_PATH_ENV,
    ENV_PREFIX,
    MASK,
    SECRET_KEYS,
    SYSTEM_CONFIG_PATH,
    masked_database_url,
)
from heatup_daemon.config.settings import Settings
from heatup_daemon.errors import ConfigError
from heatup_daemon.redact import redact
from heatup_daemon.validation import show


def resolve_config_path(explicit: Path | None) -> Path | None:
    """The TOML file to read: ``--config``, ``$HEATUP_CONFIG``, the system file, or none."""
    if explicit is not None:
        return explicit
    from_env = os.environ.get(CONFIG_PATH_ENV)
    if from_env:
        return Path(from_env)
    return SYSTEM_CONFIG_PATH if SYSTEM_CONFIG_PATH.is_file() else None


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    for key in SECRET_KEYS:
        section, name = key.split(".")
        table = data.get(section)
        if isinstance(table, dict) and name in table:
            env = f"{ENV_PREFIX}{section.upper()}__{name.upper()}"
            raise ConfigError(
                f"config file {path}: {key} is a secret and is not read from config.toml; "
                f"set {env} or put it in the credential file {key}"
            )
    return data


def load_settings(config_path: Path | None = None) -> Settings:
    """Build the settings from every source, or raise ``ConfigError`` naming each bad key."""
    path = resolve_config_path(config_path)
    data = read_config_file(path) if path is not None else {}
    try:
        return Settings(**data)
    except ValidationError as exc:
        origin = f" (config file {path})" if path is not None else ""
        raise ConfigError("\n".join(_describe(exc)) + origin) from None


def _describe(exc: ValidationError) -> Iterator[str]:
    for error in exc.errors(include_url=False):
        key = ".".join(str(part) for part in error["loc"]) or "(settings)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            yield f"config key {key}: unknown key; allowed here: {_allowed_keys(error['loc'])}"
        elif _is_secret(key):
            yield f"config key {key}: {message}"
        elif isinstance(error.get("input"), Mapping):
            # A section-wide rule: its message names the keys; the input holds the section.
            yield f"config key {key}: {message}"
        else:
            shown = _shown(key, error.get("input"))
            yield f"config key {key}: value {shown} is not allowed: {message}"


def _shown(key: str, value: object) -> str:
    """A refused value as an error shows it: a URL with any credential masked (a database
    URL masked even where it cannot be read)."""
    if key == "database.url":
        return show(masked_database_url(str(value)))
    if key.endswith("url"):
        return show(redact(str(value)))
    return show(value)


def _is_secret(key: str) -> bool:
    return any(key == secret or key.startswith(secret + ".") for secret in SECRET_KEYS)


def _allowed_keys(loc: tuple[int | str, ...]) -> str:
    model: type[BaseModel] = Settings
    for part in loc[:-1]:
        annotation = model.model_fields.get(str(part))
        field_type = annotation.annotation if annotation is not None else None
        if isinstance(field_type, type) and issubclass(field_type, BaseModel):
            model = field_type
        else:
            break
    return ", ".join(model.model_fields)


def effective_settings(settings: Settings) -> Iterator[tuple[str, Mapping[str, object]]]:
    """Each section's settings as plain values, secrets masked, for ``check-config``."""
    top: dict[str, object] = {}
    sections: list[tuple[str, Mapping[str, object]]] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, BaseModel):
            sections.append((name, _masked(name, value)))
        elif name != "channels":
            top[name] = value
    yield "", top
    yield from sections


def _masked(section: str, model: BaseModel) -> dict[str, object]:
    values: dict[str, object] = {}
    for key in type(model).model_fields:
        value = getattr(model, key)
        if isinstance(value, SecretStr):
            value = MASK
        elif section == "database" and key == "url":
            value = masked_database_url(value)
        elif isinstance(value, str):
            value = redact(value)  # a base_url may carry user:password@ or ?token=
        values[key] = value
    return values
