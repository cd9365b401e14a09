"""``heatup sessions ...`` and ``heatup channels ...``: the registry admins keep."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from heatup_daemon import transfer, warmth
from heatup_daemon.cli.common import say, settings_of, with_repository
from heatup_daemon.cli.output import print_json, print_table
from heatup_daemon.db.repository import Repository
from heatup_daemon.enums import ExitCode, Format, SessionState
from heatup_daemon.errors import InvalidValue
from heatup_daemon.session import SessionRecord
from heatup_daemon.timing.clock import SystemClock
from heatup_daemon.validation import (
    parse_account_created,
    parse_gateway_id,
    parse_username,
    validate_channel,
    validate_edit,
    validate_session,
)
from heatup_daemon.views import CLI_AUTHOR

SESSION_COLUMNS = (
    "GATEWAY ID",
    "LABEL",
    "ENABLED",
    "STATE",
    "SCHEDULE",
    "JITTER",
    "TIMEZONE",
    "NEXT RUN",
    "LAST RUN",
    "PROBLEM",
)
CHANNEL_COLUMNS = ("USERNAME", "CATEGORY", "TITLE", "ENABLED", "PROBLEM")


def add_parsers(commands: Any) -> None:
    sessions = commands.add_parser("sessions", help="register and manage sessions")
    sub = sessions.add_subparsers(dest="action", required=True, metavar="ACTION")
    _session_changes(sub)
    _session_files(sub)
    _session_reads(sub)
    channels = commands.add_parser("channels", help="manage the channel pool")
    _channel_commands(channels.add_subparsers(dest="action", required=True, metavar="ACTION"))


def _session_changes(sub: Any) -> None:
    add = sub.add_parser("add", help="register a session")
    add.add_argument("--gateway-id", required=True, help="the session's id in the gateway")
    add.add_argument("--schedule", required=True, help="interval (90s, 15m, 6h, 1d) or cron")
    add.add_argument("--jitter", type=int, default=0, help="seconds of random delay per run")
    add.add_argument("--timezone", default="UTC", help="IANA time zone of a cron schedule")
    add.add_argument("--label", help="free text for admins")
    add.add_argument(
        "--account-created",
        metavar="DATE",
        help="when the Telegram account was created (default: now): its join ramp counts from it",
    )
    add.add_argument("--disabled", action="store_true", help="register without scheduling")
    add.set_defaults(handler=sessions_add)

    edit = sub.add_parser(
        "edit", help="change a session's schedule, jitter, time zone, label or account age"
    )
    edit.add_argument("id", metavar="ID", help="gateway session id")
    edit.add_argument("--schedule", help="interval (90s, 15m, 6h, 1d) or cron")
    edit.add_argument("--jitter", type=int, help="seconds of random delay per run")
    edit.add_argument("--timezone", help="IANA time zone of a cron schedule")
    edit.add_argument("--label", help="free text for admins (an empty value clears it)")
    edit.add_argument("--account-created", metavar="DATE", help="when the account was created")
    edit.set_defaults(handler=sessions_edit)

    for name, handler, text in (
        (
            "enable",
            partial(set_session_enabled, enabled=True),
            "schedule a session again (clears needs_attention)",
        ),
        ("disable", partial(set_session_enabled, enabled=False), "stop scheduling a session"),
        ("remove", sessions_remove, "unregister a session (its history stays)"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("id", metavar="ID", help="gateway session id")
        command.set_defaults(handler=handler)


def _session_files(sub: Any) -> None:
    load = sub.add_parser("import", help="register many sessions from a CSV or JSONL file")
    load.add_argument("file", metavar="FILE", help="the file (- for standard input)")
    load.add_argument(
        "--format",
        choices=[kind.value for kind in Format],
        help="default: by the file's suffix, else by its first character",
    )
    load.add_argument(
        "--skip-invalid", action="store_true", help="register the good rows, report the others"
    )
    load.set_defaults(handler=sessions_import)

    dump = sub.add_parser("export", help="write every session as CSV or JSONL")
    dump.add_argument("--format", choices=[kind.value for kind in Format], default="csv")
    dump.add_argument("--output", metavar="FILE", help="default: standard output")
    dump.set_defaults(handler=sessions_export)


def _session_reads(sub: Any) -> None:
    listing = sub.add_parser("list", help="list registered sessions")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=sessions_list)

    show = sub.add_parser("show", help="show one session")
    show.add_argument("id", metavar="ID", help="gateway session id")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=sessions_show)


def _channel_commands(sub: Any) -> None:
    add = sub.add_parser("add", help="add a public channel to the pool")
    add.add_argument("username", metavar="@USERNAME")
    add.add_argument("--category", help="interest category, e.g. news")
    add.add_argument("--title", help="display title")
    add.add_argument("--description", help="one line about the channel")
    add.set_defaults(handler=channels_add)

    listing = sub.add_parser("list", help="list the pool")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=channels_list)

    for name, handler, text in (
        ("disable", partial(set_channel_enabled, enabled=False), "stop using a channel in plans"),
        ("enable", partial(set_channel_enabled, enabled=True), "use a disabled channel again"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("username", metavar="@USERNAME")
        command.set_defaults(handler=handler)


def session_row(view: SessionRecord) -> tuple[object, ...]:
    problem = view.invalid_reason or (
        f"{view.state}: {view.state_reason}" if view.state != SessionState.ACTIVE else None
    )
    return (
        view.gateway_session_id,
        view.label,
        view.enabled,
        view.state,
        view.schedule,
        view.jitter_seconds,
        view.timezone,
        view.next_run_at,
        view.last_run_at,
        problem,
    )


def print_sessions(views: list[SessionRecord]) -> None:
    print_table(SESSION_COLUMNS, [session_row(view) for view in views])


def sessions_add(args: argparse.Namespace) -> int:
    spec = validate_session(
        gateway_session_id=args.gateway_id,
        schedule=args.schedule,
        jitter_seconds=args.jitter,
        timezone=args.timezone,
        label=args.label,
    )
    if args.account_created is not None:
        created = parse_account_created(args.account_created, SystemClock().now())
        spec = replace(spec, account_created_at=created)
    settings = settings_of(args)
    view = with_repository(settings, lambda repo: repo.add_session(spec, enabled=not args.disabled))
    say(f"registered session {view.gateway_session_id} ({view.schedule}, {view.timezone})")
    return ExitCode.OK


def sessions_edit(args: argparse.Namespace) -> int:
    gateway_id = parse_gateway_id(args.id)
    changes = {
        "schedule": args.schedule,
        "jitter_seconds": args.jitter,
        "timezone": args.timezone,
        "label": args.label,
        "account_created_at": args.account_created,
    }
    if all(value is None for value in changes.values()):
        raise InvalidValue("nothing to change: give at least one of the options")

    async def edit(repo: Repository) -> SessionRecord:
        record = await repo.get_session(gateway_id)
        spec = validate_edit(record.public(), changes, SystemClock().now())
        return await repo.edit_session(spec)

    view = with_repository(settings_of(args), edit)
    say(f"session {gateway_id} edited ({view.schedule}, jitter {view.jitter_seconds} s, "
        f"{view.timezone})")  # fmt: skip
    return ExitCode.OK


def sessions_import(args: argparse.Namespace) -> int:
    """Register a file's sessions: all or (``--skip-invalid``) the good ones; each bad row's
    line and problem on stderr."""
    try:
        if args.file == "-":
            text = sys.stdin.read()
        else:
            text = Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidValue(f"{args.file} cannot be read: {exc}") from None
    kind = Format(args.format) if args.format else Format.of(args.file, text)

    async def load(repo: Repository) -> transfer.Report:
        return await transfer.register_all(
            repo, text, kind, skip_invalid=args.skip_invalid, by=CLI_AUTHOR,
            now=SystemClock().now(),
        )  # fmt: skip

    report = with_repository(settings_of(args), load)
    for problem in report.problems:
        sys.stderr.write(f"{args.file}: {problem}\n")
    if report.problems and not args.skip_invalid:
        raise InvalidValue(
            f"{len(report.problems)} of {report.read} rows are refused: nothing was registered "
            "(--skip-invalid registers the others)"
        )
    skipped = len(report.problems)
    rows = "row" if skipped == 1 else "rows"
    say(f"registered {report.written} of {report.read} sessions"
        + (f"; {skipped} {rows} skipped" if skipped else ""))  # fmt: skip
    return ExitCode.OK


def sessions_export(args: argparse.Namespace) -> int:
    kind = Format(args.format)

    async def dump(repo: Repository) -> int:
        count = 0
        with _output(args.output) as out:
            out.write(transfer.header(kind))
            async for batch in transfer.every_session(repo):
                out.write(transfer.export(batch, kind))
                count += len(batch)
        return count

    count = with_repository(settings_of(args), dump)
    if args.output:
        say(f"{count} sessions written to {args.output}")
    return ExitCode.OK


@contextmanager
def _output(path: str | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        return
    try:
        with Path(path).open("w", encoding="utf-8", newline="") as out:
            yield out
    except OSError as exc:
        raise InvalidValue(f"{path} cannot be written: {exc}") from None


def sessions_list(args: argparse.Namespace) -> int:
    views = with_repository(settings_of(args), Repository.list_sessions)
    if args.json:
        print_json([view.public() for view in views])
    else:
        print_sessions(views)
    return ExitCode.OK


def sessions_show(args: argparse.Namespace) -> int:
    """The session's row and its warmth report."""
    gateway_id = parse_gateway_id(args.id)
    settings = settings_of(args)

    async def read(repo: Repository) -> tuple[SessionRecord, warmth.Warmth]:
        return await warmth.report(repo, gateway_id, settings.ramp.ramp, SystemClock().now())

    record, report = with_repository(settings, read)
    if args.json:
        print_json({**record.public(), "warmth": asdict(report)})
        return ExitCode.OK
    print_table(("FIELD", "VALUE"), list(record.public().items()))
    say("\nwarmth:")
    rows = [(name, _shown(value)) for name, value in asdict(report).items()]
    print_table(("", ""), rows)
    return ExitCode.OK


def _shown(value: object) -> object:
    if isinstance(value, dict):
        return ", ".join(f"{key} {count}" for key, count in sorted(value.items())) or "-"
    if isinstance(value, list | tuple):
        return " ".join(str(item) for item in value) or "-"
    return value


def set_session_enabled(args: argparse.Namespace, *, enabled: bool) -> int:
    gateway_id = parse_gateway_id(args.id)
    with_repository(settings_of(args), lambda repo: repo.set_session_enabled(gateway_id, enabled))
    say(f"session {gateway_id} {'enabled' if enabled else 'disabled'}")
    return ExitCode.OK


def sessions_remove(args: argparse.Namespace) -> int:
    gateway_id = parse_gateway_id(args.id)
    with_repository(settings_of(args), lambda repo: repo.remove_session(gateway_id))
    say(f"session {gateway_id} removed; its run history is kept")
    return ExitCode.OK


def channels_add(args: argparse.Namespace) -> int:
    spec = validate_channel(
        username=args.username,
        title=args.title,
        category=args.category,
        description=args.description,
    )
    with_repository(settings_of(args), lambda repo: repo.add_channel(spec))
    say(f"channel @{spec.username} added to the pool")
    return ExitCode.OK


def channels_list(args: argparse.Namespace) -> int:
    stored = with_repository(settings_of(args), Repository.list_channels)
    views = [view.shown() for view in stored]
    if args.json:
        print_json(views)
        return ExitCode.OK
    rows = [
        (
            view.username,
            view.category,
            view.title,
            view.enabled,
            view.invalid_reason or view.flagged_reason,
        )
        for view in views
    ]
    print_table(CHANNEL_COLUMNS, rows)
    return ExitCode.OK


def set_channel_enabled(args: argparse.Namespace, *, enabled: bool) -> int:
    username = parse_username(args.username)
    with_repository(settings_of(args), lambda repo: repo.set_channel_enabled(username, enabled))
    say(f"channel @{username} {'enabled' if enabled else 'disabled'}")
    return ExitCode.OK
