"""Log lines: JSON with the run's fields from its context, and never a secret."""

from __future__ import annotations

import json
import logging

from heatup_daemon.logs import JsonFormatter, log_context


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    entry = logging.LogRecord("heatup_daemon.test", logging.INFO, __file__, 1, message, args, None)
    entry.__dict__.update(extra)
    return entry


def test_lines_carry_the_fields_of_their_context() -> None:
    formatter = JsonFormatter()
    with log_context(session=5, run=12):
        with log_context(action=3):
            inside = json.loads(formatter.format(record("in the action")))
        between = json.loads(formatter.format(record("between actions")))
    outside = json.loads(formatter.format(record("elsewhere")))
    assert (inside["session"], inside["run"], inside["action"]) == (5, 12, 3)
    assert "action" not in between and between["run"] == 12
    assert not {"session", "run", "action"} & set(outside)


def test_secrets_are_masked_in_every_case_and_shape() -> None:
    formatter = JsonFormatter(["planted-Secret-1234"])
    line = formatter.format(
        record(
            "echo %s %s; Authorization: Bearer other-token-9876; password=pw-9876",
            "PLANTED-SECRET-1234",
            "planted-secret-1234",
            fields={"note": "planted-Secret-1234"},
        )
    )
    assert "secret-1234" not in line.lower() and "9876" not in line
    assert json.loads(line)["message"].startswith("echo ***")
