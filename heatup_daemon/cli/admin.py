"""``heatup db ...``, ``heatup check-config`` and ``heatup demo``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from heatup_daemon.cli.common import say, settings_of, with_repository
from heatup_daemon.config.file import effective_settings, resolve_config_path
from heatup_daemon.config.sections import DatabaseSettings
from heatup_daemon.db import migrate
from heatup_daemon.enums import ExitCode
from heatup_daemon.errors import DatabaseUnavailable


def add_parsers(commands: Any) -> None:
    db = commands.add_parser("db", help="database schema migrations")
    sub = db.add_subparsers(dest="action", required=True, metavar="ACTION")
    upgrade = sub.add_parser("upgrade", help="migrate the schema to the newest revision")
    upgrade.add_argument("revision", nargs="?", default="head", help="target (default: head)")
    upgrade.set_defaults(handler=db_upgrade)
    current = sub.add_parser("current", help="print the schema revision of the database")
    current.set_defaults(handler=db_current)
    downgrade = sub.add_parser("downgrade", help="migrate the schema back to a revision")
    downgrade.add_argument("revision", metavar="REV", help="target revision, or base")
    downgrade.set_defaults(handler=db_downgrade)

    check = commands.add_parser("check-config", help="validate and print the configuration")
    check.set_defaults(handler=check_config)


def db_upgrade(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    _ensure_sqlite_directory(settings.database)
    with_repository(settings, lambda repo: migrate.upgrade(repo.engine, args.revision), ready=False)
    return db_current(args)


def db_current(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    current = with_repository(
        settings, lambda repo: migrate.current_revision(repo.engine), ready=False
    )
    head = migrate.head_revision()
    state = "(head)" if current == head else f"(head is {head}: run `heatup db upgrade`)"
    say(f"{current or 'no schema'} {state}")
    return ExitCode.OK


def db_downgrade(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    with_repository(
        settings, lambda repo: migrate.downgrade(repo.engine, args.revision), ready=False
    )
    return db_current(args)


def _ensure_sqlite_directory(database: DatabaseSettings) -> None:
    """Fail clearly when a SQLite file's folder is missing (SQLite only says 'unable to open')."""
    database_path = database.sqlite_path
    if database_path is not None and not database_path.parent.is_dir():
        raise DatabaseUnavailable(f"the database's folder {database_path.parent} does not exist")


def check_config(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    path = resolve_config_path(args.config)
    say(f"# config file: {path if path else 'none (built-in defaults)'}")
    for section, values in effective_settings(settings):
        if section:
            say(f"\n[{section}]")
        for key, value in values.items():
            say(f"{key} = {_toml(value)}" if value is not None else f"# {key} is not set")
    say(f"\n# channels: {len(settings.channels)} in the configured pool")
    return ExitCode.OK


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))
