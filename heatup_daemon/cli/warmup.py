"""``heatup warmup`` (one run in the foreground) and ``heatup history``."""

from __future__ import annotations

import argparse
import os
from typing import Any

from heatup_daemon.cli.common import say, settings_of, with_repository
from heatup_daemon.cli.output import LiveActions, format_time, print_json, print_table
from heatup_daemon.config.sections import ExecutorSettings
from heatup_daemon.db.repository import Repository
from heatup_daemon.enums import ExitCode, Outcome, RunStatus, Trigger
from heatup_daemon.planner.context import plan_context
from heatup_daemon.planner.model import Plan, PlannedAction
from heatup_daemon.records import Run, RunView
from heatup_daemon.session import validate_record
from heatup_daemon.validation import handle, parse_gateway_id

ACTION_COLUMNS = ("#", "ACTION", "CHANNEL", "SECONDS", "OUTCOME", "ERROR")


def add_parsers(commands: Any) -> None:
    warmup = commands.add_parser("warmup", help="run one warm-up now, in the foreground")
    warmup.add_argument("id", metavar="GATEWAY_ID", help="gateway session id")
    warmup.add_argument("--dry-run", action="store_true", help="print the plan; call nothing")
    warmup.add_argument(
        "--time-scale", type=_time_scale, help="multiply every wait (e.g. 0.1; 0: no waits)"
    )
    warmup.set_defaults(handler=run_warmup)

    history = commands.add_parser("history", help="a session's recent runs and their actions")
    history.add_argument("id", metavar="GATEWAY_ID", help="gateway session id")
    history.add_argument("--limit", type=int, default=10, help="runs to show (default 10)")
    history.add_argument("--json", action="store_true", help="print JSON")
    history.set_defaults(handler=show_history)


def _time_scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be between 0 and 100, got {text}")
    return value


def run_warmup(args: argparse.Namespace) -> int:
    from heatup_daemon.metrics import Metrics
    from heatup_daemon.wiring import build_parts, node_lease

    gateway_id = parse_gateway_id(args.id)
    settings = settings_of(args)
    if args.time_scale is not None:
        executor = ExecutorSettings(
            **{**settings.executor.model_dump(), "time_scale": args.time_scale}
        )
        settings = settings.model_copy(update={"executor": executor})

    async def work(repository: Repository) -> int:
        await repository.seed_channels(settings.channels)  # an empty pool only, as at start
        # A node of its own: a daemon on this host under the same name would take this
        # process's run for one whose start it lost, and run it too.
        lease = node_lease(settings, repository, name=f"{settings.node_name}/warmup-{os.getpid()}")
        clock = lease.clock
        parts = build_parts(settings, repository, clock, Metrics(), lease, LiveActions())
        try:
            if args.dry_run:
                record = await repository.get_session(gateway_id)
                session = validate_record(record, clock.now())
                now = clock.now()
                facts = await repository.planning_facts(session, now)
                limits = settings.join_policy.limits(session, now)
                _print_plan(await parts.planner.plan(plan_context(session, facts, now, limits)))
                return ExitCode.OK

            async def on_plan(run: Run, plan: Plan) -> None:
                say(f"run {run.id} for session {gateway_id}")
                _print_plan(plan)
                say("")

            async with lease.held():  # the run is alive while this process renews it
                run = await parts.runner.start(gateway_id, Trigger.CLI)
                result = await parts.runner.run(run, on_plan=on_plan)
        finally:
            await parts.aclose()
        outcome = result.outcome
        say(
            f"\nrun {result.run.id} {result.status}: {len(outcome.actions)} actions "
            f"({outcome.count(Outcome.OK)} ok, {outcome.count(Outcome.FAILED)} failed, "
            f"{outcome.count(Outcome.SKIPPED)} skipped)"
            + (f"; {outcome.error}" if outcome.error else "")
        )
        return ExitCode.FAILURE if result.status is RunStatus.FAILED else ExitCode.OK

    return with_repository(settings, work)


def _print_plan(plan: Plan) -> None:
    source = plan.source + (f" ({plan.model})" if plan.model else "")
    if plan.fallback_reason:
        source += f": {plan.fallback_reason}"
    say(f"plan from {source}, {plan.prompt_tokens + plan.completion_tokens} tokens")
    for index, action in enumerate(plan.actions, start=1):
        say(f"  {index}. {_describe(action)}")
    for note in plan.notes:
        say(f"  note: {note}")


def _describe(action: PlannedAction) -> str:
    parts: list[str] = [action.action]
    if action.channel:
        parts.append(handle(action.channel))
    if action.duration_seconds is not None:
        parts.append(f"for {action.duration_seconds:g} s")
    if action.reason:
        parts.append(f"({action.reason})")
    return " ".join(parts)


def show_history(args: argparse.Namespace) -> int:
    gateway_id = parse_gateway_id(args.id)
    stored = with_repository(settings_of(args), lambda repo: repo.history(gateway_id, args.limit))
    runs = [run.shown() for run in stored]
    if args.json:
        print_json(runs)
        return ExitCode.OK
    if not runs:
        say(f"no runs recorded for session {gateway_id}")
    for run in runs:
        _print_run(run)
    return ExitCode.OK


def _print_run(run: RunView) -> None:
    source = run.plan_source or "-"
    if run.plan_model:
        source += f" ({run.plan_model})"
    say(
        f"run {run.id}  {format_time(run.started_at)}  {run.trigger}  {run.status}  "
        f"plan: {source}  node: {run.node}" + (f"\n  {run.error}" if run.error else "")
    )
    rows = [
        (
            a.seq,
            a.kind,
            a.channel,
            None if a.actual_duration_s is None else f"{a.actual_duration_s:.2f}",
            a.outcome,
            f"{a.error_code}: {a.error_text}" if a.error_code else None,
        )
        for a in run.actions
    ]
    if rows:
        print_table(ACTION_COLUMNS, rows)
    say("")
