"""heatup's own exceptions, named for what happened.

Adapters (configuration, database, gateway, LLM) translate their libraries' exceptions into
these, so callers decide on behaviour without knowing which library is underneath.
"""

from __future__ import annotations


class HeatupError(Exception):
    """Base of every error heatup raises on purpose."""


class ConfigError(HeatupError):
    """The configuration cannot be used; the message names the key, the value and the rule."""


class InvalidValue(HeatupError, ValueError):
    """A value given by an admin (CLI argument or table row) breaks a rule.

    ``str(error)`` is one line meant for the admin: it says what is wrong and what is allowed.
    """


class DatabaseUnavailable(HeatupError):
    """The database cannot be reached or used."""


class SchemaNotAtHead(HeatupError):
    """The database schema is not at the newest migration."""


class NotFound(HeatupError):
    """A row the caller named does not exist."""


class AlreadyExists(HeatupError):
    """A row with the same unique key exists already."""


class BadRevision(HeatupError):
    """A schema revision named by an admin does not exist or cannot be reached."""
