"""The seed routes' answers, built from a run with a join, a read, a failure and an unknown
outcome: every field a seed client reads, with the seed's type and meaning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from heatup_daemon.api import compat
from heatup_daemon.enums import ActionKind, Outcome, PlanSource, RunStatus, Trigger
from heatup_daemon.planner.model import Plan, step
from heatup_daemon.records import ActionRecord, RunView
from tests.seed import assert_seed_shape

AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
PLAN = Plan(
    actions=(
        step(ActionKind.JOIN_CHANNEL, "durov", None, "founder's channel"),
        step(ActionKind.READ_MESSAGES, "durov", 12.5, "latest posts"),
        step(ActionKind.READ_MESSAGES, "telegram", 8.0, "news"),
        step(ActionKind.IDLE, None, 4.0, "pause"),
    ),
    source=PlanSource.FALLBACK,
)


def action(seq: int, outcome: Outcome, code: str | None = None) -> ActionRecord:
    planned = PLAN.actions[seq - 1]
    return ActionRecord(
        seq=seq,
        kind=planned.action,
        channel=planned.channel,
        planned_duration_s=planned.duration_seconds,
        actual_duration_s=1.0,
        started_at=AT + timedelta(seconds=seq),
        finished_at=AT + timedelta(seconds=seq + 1),
        outcome=outcome,
        error_code=code,
        error_text=None if code is None else "the gateway said no",
    )


def run_view(actions: tuple[ActionRecord, ...], status: RunStatus) -> RunView:
    return RunView(
        id=41,
        session_id=3,
        gateway_session_id=6,
        trigger=Trigger.API,
        scheduled_for=None,
        next_slot_at=None,
        due_at=AT,
        status=status,
        plan_source=PlanSource.FALLBACK,
        plan_model=None,
        plan=PLAN.document(),
        prompt_tokens=0,
        completion_tokens=0,
        node="node-a",
        started_at=AT,
        heartbeat_at=AT,
        finished_at=None if status is RunStatus.RUNNING else AT + timedelta(seconds=9),
        error=None,
        actions=actions,
    )


def test_started_has_the_seed_shape() -> None:
    answer = compat.started(6, run_view((), RunStatus.RUNNING), list(PLAN.actions))
    body = answer.model_dump(mode="json")
    assert_seed_shape("warmup.json", body)
    assert body["session_id"] == "6" and body["status"] == "started"
    assert body["execution_summary"] is None
    assert [a["channel_username"] for a in body["action_plan"]] == [
        "@durov",
        "@durov",
        "@telegram",
        None,
    ]


def test_completed_has_the_seed_shape_and_one_spelling_of_a_channel() -> None:
    actions = (
        action(1, Outcome.OK),
        action(2, Outcome.OK),
        action(3, Outcome.FAILED, "CHANNEL_PRIVATE"),
        action(4, Outcome.UNKNOWN, "transient"),
    )
    answer = compat.completed(6, run_view(actions, RunStatus.PARTIAL), list(PLAN.actions))
    body = answer.model_dump(mode="json")
    assert_seed_shape("warmup-sync.json", body)
    summary = body["execution_summary"]
    assert body["status"] == "completed" and summary["session_id"] == "6"
    assert (summary["total_actions"], summary["successful_actions"]) == (4, 2)
    assert summary["failed_actions"] == 2
    assert summary["joined_channels"] == ["@durov"]
    assert [r["success"] for r in summary["results"]] == [True, True, False, False]
    assert (
        "CHANNEL_PRIVATE" in summary["errors"][0] and "@telegram" in summary["results"][2]["result"]
    )
    channels = {
        *(a["channel_username"] for a in body["action_plan"]),
        *(a["channel"] for a in body["run"]["actions"]),
        *(a["channel"] for a in body["run"]["plan"]["actions"]),
    } - {None}
    assert channels == {"@durov", "@telegram"}  # the plan, the actions, the run: one spelling
