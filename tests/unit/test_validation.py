from __future__ import annotations

from typing import Any

import pytest

from heatup_daemon.errors import InvalidValue
from heatup_daemon.timing.schedule import CronSchedule, IntervalSchedule
from heatup_daemon.validation import parse_username, validate_channel, validate_session

GOOD = dict(gateway_session_id=1, schedule="6h", jitter_seconds=600, timezone="UTC", label=None)


def row(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


@pytest.mark.parametrize(
    "values",
    [
        row(),
        row(gateway_session_id=2**63 - 1),
        row(gateway_session_id="42"),  # text from a CLI argument
        row(schedule="*/10 * * * *", jitter_seconds=86400, timezone="Europe/Berlin"),
        row(schedule="90s", jitter_seconds=89),
        row(jitter_seconds=0),
        row(label="warm pool, Berlin office"),
        row(label="x" * 200),
        row(label="Привет 👋"),
    ],
)
def test_usable_rows(values: dict[str, Any]) -> None:
    spec = validate_session(**values)
    assert spec.gateway_session_id == int(values["gateway_session_id"])
    assert spec.timezone.key == values["timezone"]


def test_spec_carries_parsed_values() -> None:
    spec = validate_session(**row(schedule=" 0  9 * * * ", timezone="Asia/Tokyo"))
    assert spec.schedule == CronSchedule("0 9 * * *")
    assert validate_session(**row()).schedule == IntervalSchedule(21600)


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (row(gateway_session_id=0), "gateway_session_id must be a positive integer, got 0"),
        (row(gateway_session_id=-5), "positive integer, got -5"),
        (row(gateway_session_id=2**63), "positive integer"),
        (row(gateway_session_id="abc"), "positive integer, got 'abc'"),
        (row(gateway_session_id="1e3"), "positive integer"),
        (row(gateway_session_id=" 7"), "positive integer"),
        (row(gateway_session_id=1.0), "positive integer, got 1.0"),
        (row(gateway_session_id=True), "positive integer, got True"),
        (row(gateway_session_id=None), "positive integer, got None"),
        (row(gateway_session_id="٣"), "positive integer"),  # a non-ASCII digit
        (row(schedule="every day"), "neither an interval"),
        (row(schedule="61 * * * *"), "not a valid cron expression"),
        (row(schedule=None), "schedule must be text, got None"),
        (row(schedule=3600), "schedule must be text"),
        (row(jitter_seconds=-1), "jitter_seconds must be an integer >= 0, got -1"),
        (row(jitter_seconds="10"), "jitter_seconds must be an integer"),
        (row(jitter_seconds=1.5), "jitter_seconds must be an integer"),
        (row(jitter_seconds=21600), "must be below the schedule's interval"),
        (row(schedule="0 * * * *", jitter_seconds=86401), "above the maximum of 86400"),
        (row(timezone="Mars/Olympus"), "timezone 'Mars/Olympus' is not a known IANA time zone"),
        (row(timezone=""), "not a known IANA time zone"),
        (row(timezone="../../etc/passwd"), "not a known IANA time zone"),
        (row(timezone=None), "not a known IANA time zone"),
        (row(label="x" * 201), "label is 201 characters long; at most 200"),
        (row(label="bell\x07"), r"label 'bell\x07' contains control characters"),
        (row(label=12), "label must be text, got 12"),
    ],
)
def test_unusable_rows(values: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        validate_session(**values)
    message = str(caught.value)
    assert reason in message
    assert "\n" not in message


def test_long_values_are_shortened_in_messages() -> None:
    with pytest.raises(InvalidValue) as caught:
        validate_session(**row(timezone="Z" * 5000))
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("@durov", "durov"),
        ("durov", "durov"),
        ("@Tech_News1", "tech_news1"),
        ("@" + "a" * 32, "a" * 32),
    ],
)
def test_usernames(given: str, canonical: str) -> None:
    assert parse_username(given) == canonical


@pytest.mark.parametrize(
    "given",
    [
        "@abc",
        "@1abc",
        "@_abcd",
        "@" + "a" * 33,
        "@@durov",
        "@du rov",
        "@durov'",
        "@dur-ov",
        "@durov)",
        "@__import__",
        "@durov\n",
        "@\uff44\uff55\uff52\uff4f\uff56",
        "",
        "@",
        None,
        42,
    ],
)
def test_hostile_or_malformed_usernames(given: object) -> None:
    with pytest.raises(InvalidValue, match="not a public username"):
        parse_username(given)


def test_channel_rules() -> None:
    spec = validate_channel(username="@NASA", title="NASA", category="science", description=None)
    assert spec.username == "nasa"
    with pytest.raises(InvalidValue, match="category is 65 characters long"):
        validate_channel(username="@nasa", title=None, category="c" * 65, description=None)
