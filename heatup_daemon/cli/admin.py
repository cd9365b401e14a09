"""``heatup db ...``, ``heatup check-config`` and ``heatup demo``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from heatup_daemon.cli.common import EXIT_OK, say, settings_of, with_repository
from heatup_daemon.cli.registry import print_sessions
from heatup_daemon.config import (
    DatabaseSettings,
    Settings,
    effective_settings,
    load_settings,
    resolve_config_path,
)
from heatup_daemon.db import migrate
from heatup_daemon.db.repository import Repository
from heatup_daemon.errors import AlreadyExists, DatabaseUnavailable
from heatup_daemon.validation import validate_session

DEMO_DATABASE = "heatup-demo.db"
# (gateway id, schedule, jitter seconds, timezone, label)
DEMO_SESSIONS = (
    (1, "1m", 20, "UTC", "demo: every minute"),
    (2, "90s", 30, "UTC", "demo: every 90 seconds"),
    (3, "*/2 * * * *", 40, "Europe/Berlin", "demo: cron, every 2 minutes"),
    (4, "5m", 60, "America/New_York", "demo: every 5 minutes"),
    (5, "6h", 1800, "Asia/Tokyo", "demo: every 6 hours"),
)


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

    demo = commands.add_parser("demo", help="try heatup on a local demo database")
    demo.set_defaults(handler=run_demo)


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
    return EXIT_OK


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
    return EXIT_OK


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))


def run_demo(args: argparse.Namespace) -> int:
    settings = _demo_settings(args.config)
    say(f"demo database: {settings.database.url}")
    with_repository(settings, lambda repo: _prepare_demo(repo, settings), ready=False)
    return EXIT_OK


def _demo_settings(config: Path | None) -> Settings:
    base = load_settings(config)
    url = f"sqlite+aiosqlite:///{Path.cwd() / DEMO_DATABASE}"
    return base.model_copy(update={"database": DatabaseSettings(url=url)})


async def _prepare_demo(repo: Repository, settings: Settings) -> None:
    await migrate.upgrade(repo.engine)
    say(f"schema at {migrate.head_revision()}")
    added = await repo.seed_channels(settings.channels)
    say(f"channel pool: {added} channels added" if added else "channel pool: already seeded")
    for gateway_id, schedule, jitter, timezone, label in DEMO_SESSIONS:
        spec = validate_session(
            gateway_session_id=gateway_id,
            schedule=schedule,
            jitter_seconds=jitter,
            timezone=timezone,
            label=label,
        )
        try:
            await repo.add_session(spec)
        except AlreadyExists:
            pass
    say("")
    print_sessions(await repo.list_sessions())
    sys.stdout.flush()
