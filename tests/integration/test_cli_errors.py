"""Every kind of bad input to the registry commands: exit code 2, one line on stderr, and
nothing written. In-process (``heatup_daemon.cli.main``) so the whole table stays fast;
tests/acceptance checks the installed entry point on a sample of it."""

from __future__ import annotations

import json

import pytest

from heatup_daemon.cli import main

BAD_INPUT = [
    (["sessions", "add", "--gateway-id", "abc", "--schedule", "6h"], "positive integer"),
    (["sessions", "add", "--gateway-id", "0", "--schedule", "6h"], "positive integer, got '0'"),
    (["sessions", "add", "--gateway-id", "1", "--schedule", "every day"], "neither an interval"),
    (["sessions", "add", "--gateway-id", "1", "--schedule", "61 * * * *"], "cron"),
    (["sessions", "add", "--gateway-id", "1", "--schedule", "0 0 31 2 *"], "never fires"),
    (["sessions", "add", "--gateway-id", "1", "--schedule", "6h", "--jitter", "-5"], "jitter"),
    (["sessions", "add", "--gateway-id", "1", "--schedule", "1h", "--jitter", "3600"], "below"),
    (["sessions", "add", "--gateway-id", "1", "--schedule", "6h", "--jitter", "x"], "invalid int"),
    (
        ["sessions", "add", "--gateway-id", "1", "--schedule", "6h", "--timezone", "Nowhere/X"],
        "time zone",
    ),
    (["sessions", "add", "--gateway-id", "1", "--schedule", "6h", "--label", "a\x07b"], "control"),
    (["sessions", "add", "--gateway-id", "1", "--schedule", "6h", "--label", "x" * 201], "201"),
    (["sessions", "add", "--schedule", "6h"], "--gateway-id"),
    (["sessions", "show", "abc"], "positive integer"),
    (["sessions", "show", "99"], "no session with gateway id 99"),
    (["sessions", "enable", "0"], "positive integer"),
    (["sessions", "disable", "99"], "no session with gateway id 99"),
    (["sessions", "remove", "99"], "no session with gateway id 99"),
    (["sessions", "list", "--bogus"], "unrecognized arguments"),
    (["sessions"], "required"),
    (["channels", "add", "@bad-name"], "not a public username"),
    (["channels", "add", "@abc"], "not a public username"),
    (["channels", "add", "@x'); __import__('os')#"], "not a public username"),
    (["channels", "add", "@okname", "--category", "c" * 65], "category is 65 characters"),
    (["channels", "disable", "@nothere"], "@nothere is not in the pool"),
    (["frobnicate"], "invalid choice"),
    (["db", "downgrade", "nosuchrev"], "nosuchrev"),
    (["db", "upgrade", "nosuchrev"], "nosuchrev"),
    (["--config", "/nonexistent/heatup.toml", "sessions", "list"], "does not exist"),
]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exit_:  # argparse exits by itself
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("args", "fragment"), BAD_INPUT, ids=[" ".join(a)[:50] for a, _ in BAD_INPUT]
)
def test_bad_input(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    args: list[str],
    fragment: str,
) -> None:
    monkeypatch.setenv("HEATUP_DATABASE__URL", database_url)
    assert run(capsys, "db", "upgrade")[0] == 0
    code, out, err = run(capsys, *args)
    assert code == 2, (out, err)
    assert len(err.splitlines()) == 1, err
    assert err.startswith("heatup") and fragment in err
    # Nothing was written.
    assert json.loads(run(capsys, "sessions", "list", "--json")[1]) == []
    assert json.loads(run(capsys, "channels", "list", "--json")[1]) == []
