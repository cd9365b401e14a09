"""Printing for the command line: aligned tables for people, JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from datetime import datetime
from typing import Any, TextIO

from heatup_daemon.records import ActionRecord, Run
from heatup_daemon.run.events import Listener


def format_time(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%SZ")


def format_cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return format_time(value)
    return " ".join(str(value).split())  # one line per row, whatever the cell holds


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], out: TextIO | None = None
) -> None:
    out = out or sys.stdout
    cells = [[format_cell(value) for value in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    for line in (list(headers), *cells):
        text = "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        out.write(text.rstrip() + "\n")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def print_json(value: object, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    elif isinstance(value, list):
        value = [asdict(v) if is_dataclass(v) and not isinstance(v, type) else v for v in value]
    json.dump(value, out, default=_plain, indent=2, sort_keys=False)
    out.write("\n")


def action_line(record: ActionRecord, run: Run | None = None) -> str:
    """One line about an action that ended (``heatup warmup``; the demo names the run)."""
    where = record.shown().channel or "-"
    seconds = "-" if record.actual_duration_s is None else f"{record.actual_duration_s:.2f}s"
    error = f"  {record.error_code}: {record.error_text}" if record.error_code else ""
    head = f"  session {run.session.gateway_session_id} run {run.id}:" if run else " "
    return (
        f"{head} {record.seq}. {record.kind:15s} {where:22s} {seconds:>8s}  {record.outcome}{error}"
    )


class LiveActions(Listener):
    """A ``RunObserver`` that prints each action as it ends."""

    def __init__(self, *, with_run: bool = False) -> None:
        self._with_run = with_run

    def action_ended(self, run: Run, record: ActionRecord) -> None:
        sys.stdout.write(action_line(record, run if self._with_run else None) + "\n")
        sys.stdout.flush()
