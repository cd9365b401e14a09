"""Many sessions at once: the file ``heatup sessions import`` and the console's upload read,
and the one ``heatup sessions export`` writes.

Two formats, with the same fields: CSV with a header line, or JSON Lines (one object a
line). The fields are ``FIELDS``; ``gateway_id`` and ``schedule`` are required, the others
default as ``heatup sessions add`` does (jitter 0, UTC, no label, created now, enabled). Each
row is held to the CLI's rules (``validation``), and a problem names the row's line in the
file. An export imports again as the same registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import gc
import io
import itertools
import json
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

from heatup_daemon.enums import Format, Outcome
from heatup_daemon.errors import DatabaseUnavailable, ImportCut, InvalidValue
from heatup_daemon.records import RunView
from heatup_daemon.session import SessionRecord
from heatup_daemon.stores import Console
from heatup_daemon.validation import SessionSpec, parse_account_created, show, validate_session
from heatup_daemon.views import Author, RunFilter

FIELDS: Final = (
    "gateway_id",
    "schedule",
    "jitter_seconds",
    "timezone",
    "label",
    "account_created_at",
    "enabled",
)
REQUIRED: Final = ("gateway_id", "schedule")
# Rows written a transaction at a time by an import.
CHUNK: Final = 2000
_TRUE: Final = frozenset({"true", "1", "yes"})
_FALSE: Final = frozenset({"false", "0", "no"})


@dataclass(frozen=True, slots=True)
class Row:
    """A row that may be registered."""

    line: int
    spec: SessionSpec
    enabled: bool


@dataclass(frozen=True, slots=True)
class Problem:
    line: int
    text: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.text}"


@dataclass(frozen=True, slots=True)
class Parsed:
    rows: list[Row]
    problems: list[Problem]


@dataclass(frozen=True, slots=True)
class Report:
    """What an import did: rows read, sessions registered, and each bad row's problem."""

    read: int
    written: int
    problems: list[Problem]


async def register_all(
    registry: Console,
    text: str,
    kind: Format,
    *,
    skip_invalid: bool,
    by: Author,
    now: datetime,
) -> Report:
    """Import a file: nothing is written unless every row is valid and unregistered, or
    with ``skip_invalid`` the good rows are; either way the report names each bad row.

    The file is read and checked in a thread, and the rows are written ``CHUNK`` at a time,
    each chunk a transaction of its own: the node's own work goes on between them. A
    session another admin registers while the chunks are written is reported as taken,
    and the rest are written.

    The cyclic garbage collector is paused until the file's rows are gone: a 32 MiB file
    is millions of new objects, and a collection that walks them holds every thread, the
    event loop's too, for about a second. The rows hold no cycles; they are freed as soon
    as the import ends."""
    with _collector_paused():
        parsed = await asyncio.to_thread(parse, text, kind, now)
        try:
            return await _write(registry, parsed, skip_invalid=skip_invalid, by=by)
        finally:  # before the collector runs again
            await asyncio.to_thread(release, parsed.rows, parsed.problems)


async def _write(registry: Console, parsed: Parsed, *, skip_invalid: bool, by: Author) -> Report:
    if parsed.problems and not skip_invalid:  # the report's own list: the parsed ones are freed
        return Report(len(parsed.rows) + len(parsed.problems), 0, list(parsed.problems))
    registered: set[int] = set()
    for start in range(0, len(parsed.rows), CHUNK):
        chunk = parsed.rows[start : start + CHUNK]
        registered |= await registry.registered([row.spec.gateway_session_id for row in chunk])
    written = 0
    if not registered or skip_invalid:
        for start in range(0, len(parsed.rows), CHUNK):
            chunk = parsed.rows[start : start + CHUNK]
            rows = [
                (r.spec, r.enabled) for r in chunk if r.spec.gateway_session_id not in registered
            ]
            if rows:
                try:
                    imported = await registry.import_sessions(rows, skip_registered=True, by=by)
                except DatabaseUnavailable as exc:
                    if not written:  # nothing landed yet: the outage as it is
                        raise
                    raise _cut(exc, written, len(parsed.rows), chunk[0].line) from exc
                written += imported.written
                registered |= imported.registered
    return await asyncio.to_thread(_report, parsed, registered, written)


def _cut(exc: DatabaseUnavailable, written: int, rows: int, line: int) -> ImportCut:
    """What an import that lost the database after ``written`` rows landed says: each chunk
    is a transaction of its own (the one under way may have landed too), and how to go on."""
    return ImportCut(
        f"{exc}: at least {written} of {rows} sessions were registered, from the file's first "
        f"rows up to line {line - 1}; import the same file again with --skip-invalid (in the "
        "console: register the good rows and skip the others) to register the rest; the "
        "registered ones are reported as already registered"
    )


def release(*lists: list[Any]) -> None:
    """Empty ``lists`` a chunk at a time (in a worker thread): freeing millions of rows at
    once is one call that holds every thread, the event loop's too, for most of a second."""
    for items in lists:
        while items:
            del items[-CHUNK:]


def _report(parsed: Parsed, registered: set[int], written: int) -> Report:
    taken = [
        Problem(row.line, f"a session with gateway id {gid} is already registered")
        for row in parsed.rows
        if (gid := row.spec.gateway_session_id) in registered
    ]
    problems = sorted([*parsed.problems, *taken], key=lambda problem: problem.line)
    return Report(len(parsed.rows) + len(parsed.problems), written, problems)


_imports = 0  # imports under way, the collector paused for them
_collecting = True  # whether the collector ran before the first of them


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    global _imports, _collecting
    if not _imports:
        _collecting = gc.isenabled()
        gc.disable()
    _imports += 1
    try:
        yield
    finally:
        _imports -= 1
        if not _imports and _collecting:
            gc.enable()


def parse(text: str, kind: Format, now: datetime) -> Parsed:
    """Every row of the file, each valid or with its problem."""
    rows: list[Row] = []
    problems: list[Problem] = []
    first_line: dict[int, int] = {}
    # Read a record at a time: each is freed once looked at (millions freed at once would
    # hold every thread).
    records = _csv_records(text) if kind is Format.CSV else _jsonl_records(text)
    try:
        first = next(records, None)
    except InvalidValue as exc:  # the file as a whole (a header): nothing to go on
        return Parsed([], [Problem(1, str(exc))])
    for line, values in itertools.chain([] if first is None else [first], records):
        if isinstance(values, Problem):
            problems.append(values)
            continue
        try:
            row = _row(line, values, now)
        except InvalidValue as exc:
            problems.append(Problem(line, str(exc)))
            continue
        gateway_id = row.spec.gateway_session_id
        if gateway_id in first_line:
            text_ = (
                f"gateway id {gateway_id} is listed twice (first on line {first_line[gateway_id]})"
            )
            problems.append(Problem(line, text_))
            continue
        first_line[gateway_id] = line
        rows.append(row)
    return Parsed(rows, problems)


Record = tuple[int, Mapping[str, object] | Problem]


_EXTRA: Final = "\0extra"


def _csv_records(text: str) -> Iterator[Record]:
    """Each row with the line it ends on (a quoted field may span lines)."""
    reader = csv.DictReader(_each_line(text), restkey=_EXTRA)
    header = reader.fieldnames
    if not header:
        raise InvalidValue("the file is empty: a header line naming the fields comes first")
    _check_fields(header)
    try:
        for values in reader:
            line = reader.line_num
            extra = list(values.pop(_EXTRA, None) or [])
            given = [value for value in values.values() if value is not None]
            if extra or len(given) < len(header):
                count = len(given) + len(extra)
                yield line, Problem(line, f"has {count} fields; the header names {len(header)}")
                continue
            yield line, {name: value for name, value in values.items() if value != ""}
    except csv.Error as exc:
        line = reader.line_num
        yield line, Problem(line, f"is not CSV: {exc}")


def _jsonl_records(text: str) -> Iterator[Record]:
    for number, raw in enumerate(_each_line(text), start=1):
        if not raw.strip():
            continue
        try:
            values = json.loads(raw)
        except json.JSONDecodeError as exc:
            yield number, Problem(number, f"is not JSON: {exc.msg} (column {exc.colno})")
            continue
        if not isinstance(values, dict):
            yield number, Problem(number, f"is not a JSON object: {show(values)}")
            continue
        try:
            _check_fields(values)
        except InvalidValue as exc:
            yield number, Problem(number, str(exc))
            continue
        yield number, {name: value for name, value in values.items() if value is not None}


def _each_line(text: str) -> Iterator[str]:
    """The lines of ``text``, their ends kept, one at a time: no copy of a large file whole,
    and no call that holds every thread while it splits millions of lines."""
    start, size = 0, len(text)
    while start < size:
        end = text.find("\n", start)
        end = size if end < 0 else end + 1
        yield text[start:end]
        start = end


def _check_fields(names: Iterable[str]) -> None:
    unknown = [name for name in names if name not in FIELDS]
    if unknown:
        raise InvalidValue(f"unknown field {show(unknown[0])}: the fields are {', '.join(FIELDS)}")


def _row(line: int, values: Mapping[str, object], now: datetime) -> Row:
    missing = [name for name in REQUIRED if name not in values]
    if missing:
        raise InvalidValue(f"{missing[0]} is required")
    spec = validate_session(
        gateway_session_id=values["gateway_id"],
        schedule=values["schedule"],
        jitter_seconds=_whole(values.get("jitter_seconds", 0)),
        timezone=values.get("timezone", "UTC"),
        label=values.get("label"),
    )
    created = values.get("account_created_at")
    if created is not None:
        spec = replace(spec, account_created_at=parse_account_created(created, now))
    return Row(line, spec, _enabled(values.get("enabled", True)))


def _whole(value: object) -> object:
    """A CSV field's whole number as an int; anything else as given, for the rule to name."""
    if isinstance(value, str) and value.isascii() and value.strip().isdigit():
        return int(value)
    return value


def _enabled(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise InvalidValue(f"enabled must be true or false, got {show(value)}")


EXPORT_BATCH: Final = 5000


async def every_session(registry: Console) -> AsyncIterator[list[SessionRecord]]:
    """The registry a batch at a time, in row order."""
    after_id = 0
    while batch := await registry.session_batch(after_id, EXPORT_BATCH):
        yield batch
        after_id = batch[-1].id


def header(kind: Format, fields: tuple[str, ...] = FIELDS) -> str:
    """What a file of ``kind`` starts with: CSV's header line."""
    return ",".join(fields) + "\n" if kind is Format.CSV else ""


def export(records: Iterable[SessionRecord], kind: Format) -> str:
    """``records`` as lines of a file of ``kind`` (after ``header``)."""
    return _lines(FIELDS, (_values(record) for record in records), kind)


def _lines(fields: tuple[str, ...], rows: Iterable[list[object]], kind: Format) -> str:
    """Rows of ``fields`` as CSV lines (an empty field for none, true or false) or JSON
    objects (without the fields that hold none)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for values in rows:
        if kind is Format.CSV:
            writer.writerow(["" if value is None else _csv_value(value) for value in values])
        else:
            present = {n: v for n, v in zip(fields, values, strict=True) if v is not None}
            buffer.write(json.dumps(present) + "\n")
    return buffer.getvalue()


# The activity page's export: a run a line.
RUN_FIELDS: Final = (
    "run_id",
    "gateway_id",
    "status",
    "trigger",
    "node",
    "started_at",
    "finished_at",
    "plan_source",
    "actions",
    "actions_ok",
    "error",
)


async def every_run(
    registry: Console, matching: RunFilter, before_id: int | None = None
) -> AsyncIterator[list[RunView]]:
    """The runs that match, newest first, a batch at a time."""
    while batch := await registry.runs_page(matching, before_id, EXPORT_BATCH):
        yield batch
        before_id = batch[-1].id


def export_runs(runs: Iterable[RunView], kind: Format) -> str:
    """``runs`` as lines of a file of ``kind`` (after ``header(kind, RUN_FIELDS)``)."""
    return _lines(RUN_FIELDS, (_run_values(run) for run in runs), kind)


def _run_values(run: RunView) -> list[object]:
    return [
        run.id,
        run.gateway_session_id,
        run.status.value,
        run.trigger.value,
        run.node,
        run.started_at.isoformat(),
        None if run.finished_at is None else run.finished_at.isoformat(),
        None if run.plan_source is None else run.plan_source.value,
        len(run.actions),
        sum(1 for action in run.actions if action.outcome is Outcome.OK),
        run.error,
    ]


def _values(record: SessionRecord) -> list[object]:
    created = record.account_created_at
    return [
        record.gateway_session_id,
        record.schedule,
        record.jitter_seconds,
        record.timezone,
        record.label,
        created.isoformat() if isinstance(created, datetime) else created,
        record.enabled,
    ]


def _csv_value(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value
