"""``heatup demo``: the daemon against a sandbox gateway in the same process, with every wait
shrunk, on a demo SQLite database in the working folder."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any, Final

from heatup_daemon.cli.common import say
from heatup_daemon.cli.output import LiveActions, print_table
from heatup_daemon.config.file import load_settings
from heatup_daemon.config.settings import Settings
from heatup_daemon.enums import Outcome, RunStatus

DEMO_DATABASE: Final = "heatup-demo.db"
# (gateway id, schedule, jitter seconds, timezone, label)
DEMO_SESSIONS: Final = (
    (1, "30s", 5, "UTC", "every 30 seconds"),
    (2, "45s", 5, "UTC", "every 45 seconds"),
    (3, "* * * * *", 5, "Europe/Berlin", "cron: every minute, Berlin time"),
    (4, "1m", 5, "America/New_York", "every minute, New York"),
    (9001, "1m", 5, "UTC", "a revoked account (the gateway says so)"),
)
DEMO_TIME_SCALE: Final = 0.03


def add_parsers(commands: Any) -> None:
    demo = commands.add_parser("demo", help="watch heatup work against a local sandbox")
    demo.add_argument("--duration", type=float, help="stop after this many seconds")
    demo.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    import uvloop

    from heatup_daemon.logs import configure_logging

    settings = _demo_settings(args.config)
    configure_logging("INFO", json_lines=False, secrets=settings.secret_values())
    say(
        f"heatup demo: database {settings.database.sqlite_path}, time scale {DEMO_TIME_SCALE}, "
        f"API on http://127.0.0.1:{settings.api.port}"
    )
    say("runs start within seconds; Ctrl-C stops the demo and prints a summary\n")
    return uvloop.run(_demo(settings, args.duration))


def _demo_settings(config: Path | None) -> Settings:
    from heatup_daemon.http_server import free_port

    base = load_settings(config)
    return Settings.model_validate(
        {
            **base.model_dump(),
            "database": {"url": f"sqlite:///{Path.cwd() / DEMO_DATABASE}"},
            "executor": {**base.executor.model_dump(), "time_scale": DEMO_TIME_SCALE},
            "scheduler": {
                **base.scheduler.model_dump(),
                "reconcile_s": 2.0,
                "dispatch_interval_s": 0.5,
            },
            "service": {**base.service.model_dump(), "stop_timeout_s": 5.0},
            "gateway": {"base_url": "http://127.0.0.1:9"},  # replaced by the sandbox's
            "api": {"host": "127.0.0.1", "port": free_port()},
        }
    )


async def _demo(settings: Settings, duration_s: float | None) -> int:
    from heatup_daemon.http_server import ReadyServer, free_port, server_config
    from heatup_daemon.sandbox import SandboxApp
    from heatup_daemon.service import run_daemon

    port = free_port()
    sandbox = ReadyServer(
        server_config(SandboxApp(), "127.0.0.1", port, lifespan="off"), lambda: None
    )
    sandbox_task = asyncio.create_task(sandbox.serve())
    settings = settings.model_copy(
        update={
            "gateway": settings.gateway.model_copy(update={"base_url": f"http://127.0.0.1:{port}"})
        }
    )
    try:
        await _prepare(settings)

        async def on_ready() -> None:
            if duration_s is not None:
                asyncio.get_running_loop().call_later(
                    duration_s, os.kill, os.getpid(), signal.SIGINT
                )

        code = await run_daemon(
            settings, listeners=(LiveActions(with_run=True),), on_ready=on_ready
        )
        await _summary(settings)
        return code
    finally:
        sandbox.should_exit = True
        await sandbox_task


async def _prepare(settings: Settings) -> None:
    from heatup_daemon.db import migrate
    from heatup_daemon.db.repository import open_repository
    from heatup_daemon.errors import AlreadyExists
    from heatup_daemon.validation import validate_session

    async with open_repository(settings.database) as repository:
        await migrate.upgrade(repository.engine)
        await repository.seed_channels(settings.channels)
        for gateway_id, schedule, jitter, timezone, label in DEMO_SESSIONS:
            spec = validate_session(
                gateway_session_id=gateway_id,
                schedule=schedule,
                jitter_seconds=jitter,
                timezone=timezone,
                label=label,
            )
            try:
                await repository.add_session(spec)
            except AlreadyExists:
                pass


async def _summary(settings: Settings) -> None:
    from heatup_daemon.db.repository import open_repository

    async with open_repository(settings.database) as repository:
        rows = []
        for session in await repository.list_sessions():
            if not isinstance(session.gateway_session_id, int):
                continue
            runs = await repository.history(session.gateway_session_id, limit=1000)
            statuses = Counter(run.status for run in runs)
            actions = Counter(a.outcome for run in runs for a in run.actions)
            rows.append(
                (
                    session.gateway_session_id,
                    session.label,
                    session.state,
                    len(runs),
                    statuses[RunStatus.SUCCEEDED],
                    statuses[RunStatus.PARTIAL],
                    statuses[RunStatus.FAILED],
                    statuses[RunStatus.SKIPPED] + statuses[RunStatus.INTERRUPTED],
                    actions[Outcome.OK],
                    actions[Outcome.FAILED],
                )
            )
    say("\nsummary (all runs in the demo database):")
    print_table(
        (
            "SESSION",
            "LABEL",
            "STATE",
            "RUNS",
            "OK",
            "PARTIAL",
            "FAILED",
            "SKIPPED/INT",
            "ACTIONS OK",
            "ACTIONS FAILED",
        ),
        rows,
    )
    say("\nmore: heatup history ID (with HEATUP_DATABASE__URL=sqlite:///heatup-demo.db)")
