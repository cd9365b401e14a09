"""Fire times: jitter spread uniformly, nominal times that never drift, clamps, time zones."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from random import Random
from zoneinfo import ZoneInfo

import pytest

from heatup_daemon.scheduling.slots import CatchUp
from heatup_daemon.timing.schedule import (
    CronSchedule,
    IntervalSchedule,
    NominalTimes,
    Slot,
    jittered,
    nominal_times,
    slot_at_or_after,
)

ANCHOR = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)


def slot_after(times: NominalTimes, nominal: datetime, jitter_s: float, rng: Random) -> Slot:
    """The slot following the one at ``nominal``, as a claim computes it."""
    return jittered(times, times.after(nominal), jitter_s, rng)


def test_jitter_is_uniform_within_the_window() -> None:
    trigger = nominal_times(IntervalSchedule(3600), UTC, ANCHOR)
    rng = Random(20261126)
    slot = slot_at_or_after(trigger, ANCHOR, 600, rng)
    offsets = []
    for _ in range(20_000):
        offsets.append((slot.due - slot.nominal).total_seconds())
        slot = slot_after(trigger, slot.nominal, 600, rng)
    assert 0 <= min(offsets) and max(offsets) < 600
    bins = [0] * 10
    for offset in offsets:
        bins[int(offset // 60)] += 1
    expected = len(offsets) / 10
    chi_square = sum((count - expected) ** 2 / expected for count in bins)
    assert chi_square < 27.9  # 9 degrees of freedom: p = 0.001


def test_no_drift_over_a_thousand_slots() -> None:
    trigger = nominal_times(IntervalSchedule(3600), UTC, ANCHOR)
    rng = Random(1)
    slots = [slot_at_or_after(trigger, ANCHOR, 600, rng)]
    for _ in range(999):
        slots.append(slot_after(trigger, slots[-1].nominal, 600, rng))
    assert [s.nominal for s in slots] == [ANCHOR + timedelta(hours=k) for k in range(1000)]
    assert all(a.due < b.nominal for a, b in itertools.pairwise(slots))
    assert sum(1 for s in slots if s.due > s.nominal) == 1000  # jitter was applied


def test_jitter_never_reaches_the_next_nominal_time() -> None:
    # A cron period (5 min) shorter than the jitter (1 h): the jitter is clamped.
    trigger = nominal_times(CronSchedule("*/5 * * * *"), UTC, ANCHOR)
    rng = Random(3)
    slot = slot_at_or_after(trigger, ANCHOR, 3600, rng)
    for _ in range(2000):
        following = slot_after(trigger, slot.nominal, 3600, rng)
        assert slot.nominal <= slot.due < following.nominal
        assert following.nominal - slot.nominal == timedelta(minutes=5)
        slot = following


def test_zero_jitter_is_exact() -> None:
    trigger = nominal_times(IntervalSchedule(90), UTC, ANCHOR)
    slot = slot_at_or_after(trigger, ANCHOR + timedelta(seconds=100), 0, Random(1))
    assert slot.nominal == slot.due == ANCHOR + timedelta(seconds=180)


def test_slots_after_a_gap_stay_on_the_grid() -> None:
    trigger = nominal_times(IntervalSchedule(3600), UTC, ANCHOR)
    later = ANCHOR + timedelta(days=3, minutes=17)
    slot = slot_at_or_after(trigger, later, 0, Random(1))
    assert slot.nominal == ANCHOR + timedelta(days=3, hours=1)


def test_cron_reads_the_sessions_time_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    trigger = nominal_times(CronSchedule("0 9 * * *"), berlin, ANCHOR)
    winter = slot_at_or_after(trigger, datetime(2026, 1, 10, tzinfo=UTC), 0, Random(1))
    summer = slot_at_or_after(trigger, datetime(2026, 7, 10, tzinfo=UTC), 0, Random(1))
    assert winter.nominal == datetime(2026, 1, 10, 8, 0, tzinfo=UTC)
    assert summer.nominal == datetime(2026, 7, 10, 7, 0, tzinfo=UTC)
    assert winter.nominal.tzinfo is UTC


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York", "UTC"])
def test_intervals_are_absolute_across_dst(zone: str) -> None:
    start = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)  # DST changes follow in both zones
    trigger = nominal_times(IntervalSchedule(3600), ZoneInfo(zone), start)
    slot = slot_at_or_after(trigger, start, 0, Random(1))
    for _ in range(48):
        following = slot_after(trigger, slot.nominal, 0, Random(1))
        assert following.nominal - slot.nominal == timedelta(hours=1)
        slot = following


def test_a_catch_up_sweeps_the_overdue_at_twice_real_time() -> None:
    began = ANCHOR
    catch_up = CatchUp.of(began - timedelta(seconds=60), began, grace_s=300)
    assert catch_up is not None and catch_up.window == timedelta(seconds=60)
    assert catch_up.cutoff(began) == began - timedelta(seconds=60)
    assert catch_up.cutoff(began + timedelta(seconds=10)) == began - timedelta(seconds=40)
    assert catch_up.cutoff(began + timedelta(seconds=60)) is None  # caught up with real time
    for late_s in (60, 45, 1):  # the inverse: when each overdue row comes within the cutoff
        due = began - timedelta(seconds=late_s)
        at = catch_up.claimable_at(due)
        assert catch_up.cutoff(at) == due and at - due <= timedelta(seconds=60)


def test_a_catch_up_reaches_back_no_further_than_the_grace() -> None:
    catch_up = CatchUp.of(ANCHOR - timedelta(hours=5), ANCHOR, grace_s=300)
    assert catch_up is not None and catch_up.window == timedelta(seconds=300)
    # Older rows are claimable at once (and skipped as late), the rest spread over 300 s.
    assert catch_up.claimable_at(ANCHOR - timedelta(hours=5)) == ANCHOR


def test_little_overdue_needs_no_catch_up() -> None:
    assert CatchUp.of(ANCHOR - timedelta(seconds=2), ANCHOR, grace_s=300) is None
    assert CatchUp.of(None, ANCHOR, grace_s=300) is None
