"""What every command shares: the settings, a ready repository, one-line errors."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

from heatup_daemon.config.file import load_settings
from heatup_daemon.config.settings import Settings
from heatup_daemon.db.repository import Repository, open_repository
from heatup_daemon.enums import ExitCode

T = TypeVar("T")


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message}\n")


def settings_of(args: argparse.Namespace, *, warn: bool = True) -> Settings:
    """The settings; with ``warn``, each key given by its old name is told on stderr."""
    settings = load_settings(args.config)
    if warn:
        for renamed in settings.renamed_keys:
            print(f"heatup: warning: {renamed}", file=sys.stderr)
    return settings


def with_repository(
    settings: Settings, work: Callable[[Repository], Awaitable[T]], *, ready: bool = True
) -> T:
    """Run ``work`` with a repository on the configured database, then close the engine.

    With ``ready`` (the default) the database must be reachable and at the newest schema.
    """

    async def run() -> T:
        async with open_repository(settings.database) as repository:
            if ready:
                await repository.ensure_ready()
            return await work(repository)

    return asyncio.run(run())


def say(message: str) -> None:
    sys.stdout.write(message + "\n")
