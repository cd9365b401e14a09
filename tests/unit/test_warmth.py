"""The join ledger's rule for a plan's joins, which both stores apply to what they count."""

from __future__ import annotations

from heatup_daemon.enums import JoinRefusal
from heatup_daemon.records import JoinLimits
from heatup_daemon.warmth import reserve_places

LIMITS = JoinLimits(per_day=3, per_channel_hour=2)
IDS = {"nasa": 1, "espn": 2, "bbcnews": 3, "cnn": 4}


def test_each_grant_takes_a_join_of_the_ramp_and_a_place_of_the_channel() -> None:
    # The account holds one of its three joins of the day; espn's hour is full.
    verdicts, granted = reserve_places(
        ["espn", "nasa", "gone", "bbcnews", "cnn"], IDS, 1, {2: 2, 3: 1}, LIMITS
    )
    assert verdicts == {
        "espn": JoinRefusal.CHANNEL_PACE,
        "nasa": None,
        "gone": JoinRefusal.GONE,
        "bbcnews": None,  # its hour's last place
        "cnn": JoinRefusal.RAMP,  # the day's three are held or granted
    }
    assert granted == [1, 3]


def test_a_channel_named_twice_is_granted_one_place() -> None:
    verdicts, granted = reserve_places(["nasa", "nasa"], IDS, 0, {}, LIMITS)
    assert verdicts == {"nasa": None}
    assert granted == [1]
