"""Cron slots through daylight-saving changes in every zone, against an independent oracle.

The oracle matches crontab fields from scratch and walks the timeline minute by minute with
the standard library's conversions. It knows the rule (README "Daylight saving"): an
expression whose hour field starts with ``*`` fires at every instant whose local time it
names; any other fires once per named local time, at its first copy, and a named time that a
gap removes fires at the gap's end. Each chain of slots must be exactly the oracle's, strictly
increasing, keep its jitter below the next slot, and pass the database's own constraints.
"""

from __future__ import annotations

import functools
import itertools
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from random import Random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, insert
from sqlalchemy.engine import Engine

from heatup_daemon.db.models import Base, RunRow, SessionRow
from heatup_daemon.timing import zones
from heatup_daemon.timing.cron import CronTimes, parse_cron
from heatup_daemon.timing.schedule import jittered

MINUTE = timedelta(minutes=1)
# A repeated time's first copy is at most this much before its second (Antarctica/Vostok
# went back 7 hours; most changes are one hour).
WARM_UP = timedelta(hours=8)
DRAWN_YEARS = range(2010, 2038)
ZONES = sorted(zoneinfo.available_timezones())


@dataclass(frozen=True)
class Oracle:
    """A crontab line, matched the way crontab(5) says, independently of heatup's code."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    either_day: bool
    by_elapsed_time: bool

    @classmethod
    def of(cls, text: str) -> Oracle:
        minute, hour, day, month, weekday = text.split(" ")
        return cls(
            _values(minute, 0, 59),
            _values(hour, 0, 23),
            _values(day, 1, 31),
            _values(month, 1, 12),
            frozenset(d % 7 for d in _values(weekday, 0, 7)),
            not day.startswith("*") and not weekday.startswith("*"),
            hour.startswith("*"),
        )

    def names(self, wall: datetime) -> bool:
        if wall.minute not in self.minutes or wall.hour not in self.hours or wall.second:
            return False
        weekday = (wall.weekday() + 1) % 7
        in_day, in_weekday = wall.day in self.days, weekday in self.weekdays
        day_ok = (in_day or in_weekday) if self.either_day else (in_day and in_weekday)
        return day_ok and wall.month in self.months


def _values(field: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for item in field.split(","):
        part, _, step = item.partition("/")
        first, last = (low, high) if part == "*" else map(int, (part.split("-") * 2)[:2])
        values.update(range(first, last + 1, int(step or 1)))
    return frozenset(values)


@functools.lru_cache(maxsize=64)
def timeline(
    zone_name: str, start: datetime, end: datetime
) -> tuple[tuple[datetime, datetime], ...]:
    """(instant, local wall time) for every whole minute from ``WARM_UP`` before ``start``
    to ``end``, by the standard library's conversions."""
    zone = zoneinfo.ZoneInfo(zone_name)
    at = (start - WARM_UP).replace(second=0, microsecond=0)
    moments = []
    while at <= end:
        moments.append((at, at.astimezone(zone).replace(tzinfo=None)))
        at += MINUTE
    return tuple(moments)


def expected_slots(
    oracle: Oracle, zone_name: str, start: datetime, end: datetime
) -> list[datetime]:
    """The slots in ``(start, end]``, walking the timeline minute by minute."""
    slots: set[datetime] = set()
    seen: set[datetime] = set()
    moments = timeline(zone_name, start, end)
    previous_wall = moments[0][1] - MINUTE
    for at, wall in moments:
        if oracle.by_elapsed_time:
            fires = oracle.names(wall)
        else:
            fires = oracle.names(wall) and wall not in seen
            skipped = previous_wall + MINUTE
            while skipped < wall:  # the local times a gap removed just before this instant
                fires = fires or oracle.names(skipped)
                skipped += MINUTE
        seen.add(wall)
        if fires and at > start:
            slots.add(at)
        previous_wall = wall
    return sorted(slots)


def chain(text: str, zone: zoneinfo.ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    times = CronTimes(parse_cron(text), zone)
    slots, at = [], start
    while (at := times.after(at)) <= end:
        slots.append(at)
    slots.append(at)  # the first past the window: the chain's next_slot_at
    return slots


@functools.cache
def database() -> Engine:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    return engine


def check_chain(text: str, zone_name: str, start: datetime, end: datetime, rng: Random) -> int:
    """Assert everything the chain of ``text`` from ``start`` must be; return its length."""
    zone = zoneinfo.ZoneInfo(zone_name)
    slots = chain(text, zone, start, end)
    assert all(a < b for a, b in itertools.pairwise(slots)), slots
    expected = expected_slots(Oracle.of(text), zone_name, start, end)
    assert slots[:-1] == expected, (text, zone_name, start, [s.isoformat() for s in slots])
    times = CronTimes(parse_cron(text), zone)
    rows = []
    for nominal, following in itertools.pairwise(slots):
        slot = jittered(times, nominal, rng.uniform(0, 7200), rng)
        assert nominal <= slot.due < following
        rows.append(
            {"session_id": 1, "gateway_session_id": 1, "trigger": "schedule",
             "scheduled_for": nominal, "next_slot_at": following, "due_at": slot.due,
             "status": "skipped", "node": "n", "started_at": nominal, "finished_at": nominal}
        )  # fmt: skip
    with database().connect() as db, db.begin() as transaction:
        db.execute(insert(SessionRow).values(id=1, gateway_session_id=1, schedule=text))
        if rows:
            db.execute(insert(RunRow), rows)  # the database refuses a row it cannot keep
        transaction.rollback()
    return len(expected)


def transitions(zone_name: str, years: range) -> list[zones.Transition]:
    zone = zoneinfo.ZoneInfo(zone_name)
    return [t for year in years for t in zones.transitions_in(zone, year)]


def targeted(zone_name: str, change: zones.Transition) -> Iterator[str]:
    """Expressions whose hour and minute hit the change: the local times on both sides."""
    before = change.at + change.before
    after = change.at + change.after
    for wall in {before, after - timedelta(minutes=30)}:
        yield f"{wall.minute} {wall.hour} * * *"
        yield f"{wall.minute} * * * *"
        yield f"*/15 {wall.hour} * * *"
    yield "*/15 * * * *"
    yield f"0,30 {before.hour}-{min(before.hour + 2, 23)} * * *"


def area(zone_name: str) -> str:
    """A zone's area: the first part of its name (``Europe``), or ``-`` for a name of one
    part (``UTC``, ``GB``)."""
    return zone_name.split("/")[0] if "/" in zone_name else "-"


AREAS = sorted({area(zone_name) for zone_name in ZONES})
# The areas none of whose zones changes its clocks in 2026.
WITHOUT_CHANGES_IN_2026 = {"Brazil", "Etc", "Indian"}


@pytest.mark.parametrize("zone_area", AREAS)  # an area a test: they run side by side
def test_every_zone_through_every_change_of_a_year(zone_area: str) -> None:
    covered_zones = covered_changes = 0
    for zone_name in (name for name in ZONES if area(name) == zone_area):
        changes = transitions(zone_name, range(2026, 2027))
        covered_zones += 1
        if not changes:  # no daylight saving: slots are the plain local times
            check_chain("0 9 * * *", zone_name, datetime(2026, 6, 1, tzinfo=UTC),
                        datetime(2026, 6, 4, tzinfo=UTC), Random(1))  # fmt: skip
        for change in changes:
            covered_changes += 1
            for text in targeted(zone_name, change):
                check_chain(text, zone_name, change.at - timedelta(hours=2),
                            change.at + timedelta(hours=2), Random(1))  # fmt: skip
    assert covered_zones > 0
    assert (covered_changes > 0) == (zone_area not in WITHOUT_CHANGES_IN_2026), covered_changes


@functools.cache
def changes_of(zone_name: str) -> list[zones.Transition]:
    return transitions(zone_name, DRAWN_YEARS)


@st.composite
def cron_near_a_change(draw: st.DrawFn) -> tuple[str, str, datetime]:
    zone_name = draw(st.sampled_from(ZONES).filter(changes_of))
    change = draw(st.sampled_from(changes_of(zone_name)))
    local = draw(st.sampled_from([change.at + change.before, change.at + change.after]))
    near_hours = sorted({(local.hour + d) % 24 for d in (-1, 0, 1)})
    minute = draw(
        st.one_of(
            st.just(str(local.minute)),
            st.sets(st.integers(0, 59), min_size=1, max_size=3).map(
                lambda m: ",".join(map(str, sorted(m | {local.minute})))
            ),
            st.sampled_from(["*/15", "*/20", "0-30/10"]),
        )
    )
    hour = draw(
        st.one_of(
            st.just(str(local.hour)),
            st.just(",".join(map(str, near_hours))),
            st.sampled_from(["*", "*/2", "*/3"]),
            st.just(f"{near_hours[0]}-{near_hours[-1]}"),
        )
    )
    day = draw(st.sampled_from(["*", str(local.day), f"{local.day},{local.day % 28 + 1}"]))
    weekday = draw(st.sampled_from(["*", str((local.weekday() + 1) % 7), "1-5", "0,6"]))
    start = change.at - timedelta(seconds=draw(st.integers(0, 86_400)))
    return f"{minute} {hour} {day} * {weekday}", zone_name, start


# Drawing a zone scans its 28 years of changes the first time (cached after): slow, on a
# machine whose cores the other test workers share, but not a sign of a bad strategy.
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(cron_near_a_change(), st.integers(0, 2**32))
def test_drawn_expressions_near_every_zones_changes(
    case: tuple[str, str, datetime], seed: int
) -> None:
    text, zone_name, start = case
    check_chain(text, zone_name, start, start + timedelta(hours=30), Random(seed))


@pytest.mark.parametrize("zone_area", AREAS)
def test_the_zone_data_changes_exactly_where_transitions_say(zone_area: str) -> None:
    """Every six hours through 2026 in every zone, the offset changes only across a
    transition (a finer grid than the daily scan that found them)."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for zone_name in (name for name in ZONES if area(name) == zone_area):
        zone = zoneinfo.ZoneInfo(zone_name)
        found = {t.at: t for t in transitions(zone_name, range(2026, 2027))}
        at, offset = start, zones.offset_at(zone, start)
        while at.year == 2026:
            following = at + timedelta(hours=6)
            changed = zones.offset_at(zone, following) != offset
            inside = [t for t in found.values() if at < t.at <= following]
            assert changed == bool(inside), (zone_name, at)
            for t in inside:
                assert zones.offset_at(zone, t.at - timedelta(seconds=1)) == t.before
                assert zones.offset_at(zone, t.at) == t.after
            at, offset = following, zones.offset_at(zone, following)


@pytest.mark.parametrize(
    ("text", "zone", "start", "expected"),
    [
        # New York falls back at 06:00Z (02:00 EDT -> 01:00 EST).
        ("0 1 * * *", "America/New_York", "2024-11-03T03:00Z", ["05:00", "11-04 06:00"]),
        ("0 * * * *", "America/New_York", "2024-11-03T04:30Z", ["05:00", "06:00", "07:00"]),
        ("30 1 * * *", "America/New_York", "2024-11-03T05:31Z", ["11-04 06:30"]),
        # New York springs forward at 07:00Z (02:00 EST -> 03:00 EDT).
        ("30 2 * * *", "America/New_York", "2024-03-10T05:00Z", ["07:00", "03-11 06:30"]),
        ("0 2,3 * * *", "America/New_York", "2024-03-10T05:00Z", ["07:00", "03-11 06:00"]),
        ("*/30 * * * *", "America/New_York", "2024-03-10T06:15Z", ["06:30", "07:00", "07:30"]),
        # Sydney falls back at 16:00Z on 2025-04-05 (03:00 AEDT -> 02:00 AEST).
        ("30 2 * * *", "Australia/Sydney", "2025-04-05T14:00Z", ["15:30", "04-06 16:30"]),
    ],
)
def test_the_rule_by_example(text: str, zone: str, start: str, expected: list[str]) -> None:
    begin = datetime.fromisoformat(start)
    times = CronTimes(parse_cron(text), zoneinfo.ZoneInfo(zone))
    got, at = [], begin
    for _ in expected:
        at = times.after(at)
        got.append(f"{at:%H:%M}" if at.date() == begin.date() else f"{at:%m-%d %H:%M}")
    assert got == expected
