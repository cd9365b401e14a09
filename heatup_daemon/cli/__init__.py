"""The ``heatup`` command.

Exit codes: 0 success; 1 the work failed (database unreachable, schema not migrated);
2 bad input (arguments, configuration, a value breaking a rule, an unknown or duplicate id),
reported as one line on stderr with no traceback and nothing written.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from heatup_daemon import __version__
from heatup_daemon.cli import admin, daemon, demo, registry, sandbox, warmup
from heatup_daemon.cli.common import Parser
from heatup_daemon.enums import ExitCode
from heatup_daemon.errors import (
    AlreadyExists,
    AlreadyRunning,
    BadRevision,
    ConfigError,
    DatabaseUnavailable,
    InvalidValue,
    NotFound,
    SchemaNotAtHead,
    SessionNotRunnable,
)
from heatup_daemon.journal import is_journal_stream

USAGE_ERRORS = (ConfigError, InvalidValue, NotFound, AlreadyExists, BadRevision)
FAILURES = (DatabaseUnavailable, SchemaNotAtHead, SessionNotRunnable, AlreadyRunning)


def build_parser() -> Parser:
    parser = Parser(prog="heatup", description="Keeps Telegram sessions active on a schedule.")
    parser.add_argument("--version", action="version", version=f"heatup {__version__}")
    parser.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="TOML configuration (default: $HEATUP_CONFIG, else /etc/heatup/config.toml)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    daemon.add_parsers(commands)
    demo.add_parsers(commands)
    admin.add_parsers(commands)
    registry.add_parsers(commands)
    sandbox.add_parsers(commands)
    warmup.add_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except USAGE_ERRORS as exc:
        return _fail(ExitCode.USAGE, exc)
    except FAILURES as exc:
        return _fail(ExitCode.FAILURE, exc)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`heatup sessions list | head`): not an error of ours.
        # Point stdout at /dev/null so the interpreter's final flush stays quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.FAILURE
    return code


def _fail(code: int, exc: Exception) -> int:
    # Under systemd (ExecStartPre's `heatup db upgrade`, say) the journal takes a line's
    # priority from a "<3>" before it: `journalctl -p err` shows why the command failed.
    priority = "<3>" if is_journal_stream(streams=[sys.stderr]) else ""
    sys.stderr.write(f"{priority}heatup: error: {exc}\n")
    return code
