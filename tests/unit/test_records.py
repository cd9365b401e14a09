"""The records as outputs show them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from heatup_daemon.enums import ActionKind, Outcome, RunStatus, Trigger
from heatup_daemon.records import IN_FLIGHT, ActionRecord, RunView

AT = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
CRASH_TEXT = "heatup stopped while the action was in flight: it may have happened"
DONE = ActionRecord(1, ActionKind.JOIN_CHANNEL, "nasa", None, 1.2, AT, AT, Outcome.OK)
CALLING = ActionRecord(
    2, ActionKind.READ_MESSAGES, "nasa", 20.0, None, AT, AT, Outcome.UNKNOWN, IN_FLIGHT, CRASH_TEXT
)
RUN = RunView(
    id=7,
    session_id=1,
    gateway_session_id=5,
    trigger=Trigger.SCHEDULE,
    scheduled_for=AT,
    next_slot_at=None,
    due_at=AT,
    status=RunStatus.RUNNING,
    plan_source=None,
    plan_model=None,
    plan=None,
    prompt_tokens=None,
    completion_tokens=None,
    node="node-a",
    started_at=AT,
    heartbeat_at=AT,
    finished_at=None,
    error=None,
    actions=(DONE, CALLING),
)


def test_a_live_runs_last_call_is_shown_in_flight_not_lost() -> None:
    shown = RUN.shown().actions
    assert shown[0].channel == "@nasa" and shown[0].error_text is None
    assert (shown[1].error_code, shown[1].error_text) == (
        "in_flight",
        "in flight: the gateway call is under way",
    )


def test_once_the_run_ended_its_row_tells_what_a_crash_left() -> None:
    ended = replace(RUN, status=RunStatus.INTERRUPTED, finished_at=AT).shown()
    assert ended.actions[1].error_text == CRASH_TEXT
