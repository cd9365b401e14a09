"""``heatup run``: the daemon."""

from __future__ import annotations

import argparse
import logging
from typing import Any


def add_parsers(commands: Any) -> None:
    run = commands.add_parser("run", help="run the daemon")
    run.add_argument("--once", action="store_true", help="run what is due now, then exit")
    run.add_argument("--node-name", type=node_name, help="this process's name in the history")
    run.set_defaults(handler=run_daemon_command)


def node_name(text: str) -> str:
    if not 1 <= len(text) <= 128 or not text.isprintable():
        raise argparse.ArgumentTypeError("must be 1 to 128 printable characters")
    return text


def run_daemon_command(args: argparse.Namespace) -> int:
    import uvloop

    from heatup_daemon.cli.common import settings_of
    from heatup_daemon.logs import configure_logging
    from heatup_daemon.service import run_daemon

    settings = settings_of(args, warn=False)
    if args.node_name:
        settings = settings.model_copy(update={"node_name": args.node_name})
    configure_logging(settings.service.log_level, secrets=settings.secret_values())
    for renamed in settings.renamed_keys:
        logging.getLogger("heatup_daemon.config").warning("%s", renamed)
    return uvloop.run(run_daemon(settings, once=args.once))
