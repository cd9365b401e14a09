"""Reading an import file and writing an export: each row held to the CLI's rules, each
problem at its line."""

from __future__ import annotations

import asyncio
import gc
import json
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from heatup_daemon import transfer
from heatup_daemon.enums import Actor, Format, Surface
from heatup_daemon.session import SessionRecord
from heatup_daemon.transfer import CHUNK, FIELDS, Report, export, header, parse, register_all
from heatup_daemon.validation import SessionSpec
from heatup_daemon.views import Author, Imported

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_good_csv_rows_with_defaults() -> None:
    parsed = parse(
        "gateway_id,schedule,jitter_seconds,timezone,label,account_created_at,enabled\n"
        "1,6h,600,Europe/Berlin,office,2024-05-01,true\n"
        "2,0 9 * * *,,,,,\n"
        "3,1d,0,UTC,,,no\n",
        Format.CSV,
        NOW,
    )
    assert parsed.problems == []
    first, second, third = parsed.rows
    assert (first.line, first.spec.jitter_seconds, first.spec.timezone.key) == (
        2,
        600,
        "Europe/Berlin",
    )
    assert first.spec.label == "office" and first.enabled
    assert first.spec.account_created_at == datetime(2024, 5, 1, tzinfo=UTC)
    assert (second.spec.jitter_seconds, second.spec.timezone.key, second.spec.label) == (
        0,
        "UTC",
        None,
    )
    assert second.spec.account_created_at is None and second.enabled
    assert not third.enabled


def test_each_bad_row_is_named_by_its_line() -> None:
    parsed = parse(
        "gateway_id,schedule,jitter_seconds\n"
        "1,6h,0\n"
        "x,6h,0\n"  # line 3
        "2,when pigs fly,0\n"
        "3,6h,-5\n"
        "4,6h,99999\n"  # not below the interval
        "1,1d,0\n"  # listed twice
        "5,6h\n"  # a field short
        "6,6h,0,extra\n"
        ",6h,0\n",  # line 10: no gateway id
        Format.CSV,
        NOW,
    )
    assert [row.spec.gateway_session_id for row in parsed.rows] == [1]
    lines = {problem.line: problem.text for problem in parsed.problems}
    assert sorted(lines) == [3, 4, 5, 6, 7, 8, 9, 10]
    assert "gateway" in lines[3] and "schedule" in lines[4]
    assert "jitter_seconds" in lines[5] and "below the schedule's interval" in lines[6]
    assert lines[7] == "gateway id 1 is listed twice (first on line 2)"
    assert lines[8] == "has 2 fields; the header names 3"
    assert lines[9] == "has 4 fields; the header names 3"
    assert lines[10] == "gateway_id is required"
    assert str(parsed.problems[0]).startswith("line 3: ")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "the file is empty"),
        ("gateway_id,cadence\n1,6h\n", "unknown field 'cadence'"),
    ],
)
def test_a_bad_header_refuses_the_file(text: str, problem: str) -> None:
    parsed = parse(text, Format.CSV, NOW)
    assert parsed.rows == [] and len(parsed.problems) == 1
    assert parsed.problems[0].line == 1 and problem in parsed.problems[0].text


def test_json_lines() -> None:
    parsed = parse(
        '{"gateway_id": 1, "schedule": "6h", "enabled": false}\n'
        "\n"
        "not json\n"
        "[1, 2]\n"
        '{"gateway_id": 2, "schedule": "6h", "color": "red"}\n'
        '{"gateway_id": 3, "schedule": "6h", "jitter_seconds": "10"}\n'
        '{"gateway_id": 4, "schedule": "6h", "enabled": "maybe"}\n',
        Format.JSONL,
        NOW,
    )
    # A number given as text is taken, as a CSV file gives every number.
    assert [(row.line, row.enabled, row.spec.jitter_seconds) for row in parsed.rows] == [
        (1, False, 0),
        (6, True, 10),
    ]
    lines = {problem.line: problem.text for problem in parsed.problems}
    assert sorted(lines) == [3, 4, 5, 7]
    assert lines[3].startswith("is not JSON") and lines[4].startswith("is not a JSON object")
    assert "unknown field 'color'" in lines[5]
    assert "enabled must be true or false" in lines[7]


def test_the_format_is_told_by_the_name_else_the_first_character() -> None:
    assert Format.of("pool.csv", "{") is Format.CSV
    assert Format.of("pool.jsonl", "gateway_id") is Format.JSONL
    assert Format.of("-", '  {"gateway_id": 1}') is Format.JSONL
    assert Format.of("-", "gateway_id,schedule") is Format.CSV


def record(gateway_id: int, **values: object) -> SessionRecord:
    fields: dict[str, object] = {
        "id": gateway_id,
        "gateway_session_id": gateway_id,
        "label": 'a "quoted", label',
        "enabled": False,
        "schedule": "*/30 * * * *",
        "jitter_seconds": 120,
        "timezone": "Asia/Tokyo",
        "account_created_at": datetime(2023, 1, 2, 3, 4, tzinfo=UTC),
        "state": "active",
        "state_reason": None,
        "invalid_reason": None,
        "next_nominal_at": None,
        "next_run_at": None,
        "last_run_at": None,
        "cooldown_until": None,
        "flood_wait_at": None,
        "flood_wait_s": None,
        "created_at": NOW,
        "key": "",
        "applied_key": None,
    }
    fields.update(values)
    return SessionRecord(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", list(Format))
def test_an_export_imports_as_the_same_registry(kind: Format) -> None:
    records = [record(1), record(2, label=None, enabled=True, account_created_at=None)]
    text = header(kind) + export(records, kind)
    parsed = parse(text, kind, NOW)
    assert parsed.problems == []
    again = [
        (
            row.spec.gateway_session_id,
            row.spec.label,
            row.enabled,
            row.spec.schedule_text,
            row.spec.jitter_seconds,
            row.spec.timezone.key,
            row.spec.account_created_at,
        )
        for row in parsed.rows
    ]
    created = datetime(2023, 1, 2, 3, 4, tzinfo=UTC)
    assert again == [
        (1, 'a "quoted", label', False, "*/30 * * * *", 120, "Asia/Tokyo", created),
        (2, None, True, "*/30 * * * *", 120, "Asia/Tokyo", None),
    ]
    if kind is Format.JSONL:
        assert set(json.loads(text.splitlines()[0])) <= set(FIELDS)


class Registered:
    """The registry's side of an import: what is registered, and each chunk written."""

    def __init__(self, *taken: int) -> None:
        self.ids = set(taken)
        self.chunks: list[int] = []
        self.taken_meanwhile: set[int] = set()  # registered by another admin mid-import

    async def registered(self, gateway_ids: Sequence[int]) -> set[int]:
        return self.ids & set(gateway_ids)

    async def import_sessions(
        self, rows: Sequence[tuple[SessionSpec, bool]], *, skip_registered: bool, by: Author
    ) -> Imported:
        self.ids |= self.taken_meanwhile
        ids = {spec.gateway_session_id for spec, _ in rows}
        taken = self.ids & ids
        assert skip_registered
        self.chunks.append(len(ids - taken))
        self.ids |= ids
        return Imported(taken, len(ids - taken))


def many(count: int) -> str:
    return "gateway_id,schedule\n" + "".join(f"{n},6h\n" for n in range(1, count + 1))


async def import_into(registry: Registered, text: str, *, skip_invalid: bool = False) -> Report:
    return await register_all(
        registry,  # type: ignore[arg-type]
        text,
        Format.CSV,
        skip_invalid=skip_invalid,
        by=Author(Surface.CLI, Actor.CLI),
        now=NOW,
    )


async def test_an_import_is_read_off_the_loop_and_written_a_chunk_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads: list[int] = []

    def parse_here(*args: Any) -> Any:
        threads.append(threading.get_ident())
        return parse(*args)

    monkeypatch.setattr(transfer, "parse", parse_here)
    registry = Registered()
    report = await import_into(registry, many(2 * CHUNK + 5))
    assert threads and threads[0] != threading.get_ident()
    assert registry.chunks == [CHUNK, CHUNK, 5]
    assert (report.read, report.written, report.problems) == (2 * CHUNK + 5, 2 * CHUNK + 5, [])


async def test_one_registered_id_refuses_the_import_before_any_chunk() -> None:
    registry = Registered(CHUNK + 3)
    report = await import_into(registry, many(2 * CHUNK))
    assert registry.chunks == [] and report.written == 0
    assert [str(p) for p in report.problems] == [
        f"line {CHUNK + 4}: a session with gateway id {CHUNK + 3} is already registered"
    ]


async def test_a_session_registered_meanwhile_is_reported_and_the_rest_written() -> None:
    registry = Registered()
    registry.taken_meanwhile = {2 * CHUNK}  # another admin, while the first chunk is written
    report = await import_into(registry, many(2 * CHUNK))
    assert report.written == 2 * CHUNK - 1 and registry.chunks == [CHUNK, CHUNK - 1]
    assert [p.line for p in report.problems] == [2 * CHUNK + 1]


async def test_the_collector_is_paused_while_a_file_is_imported_and_only_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    during: list[bool] = []

    def parse_here(*args: Any) -> Any:
        during.append(gc.isenabled())
        return parse(*args)

    monkeypatch.setattr(transfer, "parse", parse_here)
    assert gc.isenabled()
    await asyncio.gather(*(import_into(Registered(), many(10)) for _ in range(3)))
    assert during == [False, False, False] and gc.isenabled()
