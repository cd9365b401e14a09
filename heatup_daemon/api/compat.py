"""The answers of the original service's routes, kept for its clients.

``POST /warmup/{id}`` and ``POST /warmup-sync/{id}`` answer a superset of what the original
service answered: every field it had, with its name, type and meaning (``session_id`` is the
gateway id as a string, ``action_plan[].channel_username`` a channel as ``@username``,
``status`` the words ``started`` and ``completed``), plus heatup's whole run record under
``run`` (its precise status among them).
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict

from heatup_daemon.enums import ActionKind, Outcome
from heatup_daemon.planner.model import PlannedAction
from heatup_daemon.records import ActionRecord, RunView
from heatup_daemon.validation import handle

STARTED: Final = "started"
COMPLETED: Final = "completed"


class SeedAction(BaseModel):
    action: str
    channel_username: str | None
    duration_seconds: float | None
    reason: str


class SeedResult(BaseModel):
    step: int
    action: str
    result: str
    success: bool


class ExecutionSummary(BaseModel):
    session_id: str
    total_actions: int
    successful_actions: int
    failed_actions: int
    results: list[SeedResult]
    errors: list[str]
    joined_channels: list[str]


class WarmupAnswer(BaseModel):
    """The original service's answer, and heatup's run under ``run``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    session_id: str
    status: str
    message: str
    action_plan: list[SeedAction]
    execution_summary: ExecutionSummary | None
    run: RunView


def seed_plan(actions: list[PlannedAction]) -> list[SeedAction]:
    return [
        SeedAction(
            action=a.action,
            channel_username=None if a.channel is None else handle(a.channel),
            duration_seconds=a.duration_seconds,
            reason=a.reason,
        )
        for a in actions
    ]


def started(gateway_session_id: int, view: RunView, actions: list[PlannedAction]) -> WarmupAnswer:
    run = view.shown()
    message = (
        f"warm-up started for session {gateway_session_id}: run {run.id}, "
        f"{len(actions)} actions planned by {run.plan_source or '-'}"
    )
    return _answer(gateway_session_id, run, actions, STARTED, message, None)


def completed(gateway_session_id: int, view: RunView, actions: list[PlannedAction]) -> WarmupAnswer:
    run = view.shown()
    summary = summarize(str(gateway_session_id), run.actions)
    message = (
        f"warm-up completed for session {gateway_session_id}: run {run.id} {run.status}, "
        f"{summary.successful_actions} of {summary.total_actions} actions succeeded"
    )
    return _answer(gateway_session_id, run, actions, COMPLETED, message, summary)


def _answer(
    gateway_session_id: int,
    run: RunView,
    actions: list[PlannedAction],
    status: str,
    message: str,
    summary: ExecutionSummary | None,
) -> WarmupAnswer:
    return WarmupAnswer(
        session_id=str(gateway_session_id),
        status=status,
        message=message,
        action_plan=seed_plan(actions),
        execution_summary=summary,
        run=run,
    )


def summarize(session_id: str, actions: tuple[ActionRecord, ...]) -> ExecutionSummary:
    """The seed's summary of a run's actions, as shown (channels as ``@username``)."""
    results = [
        SeedResult(
            step=a.seq,
            action=a.kind,
            result=_result(a),
            success=a.outcome is Outcome.OK,
        )
        for a in actions
    ]
    return ExecutionSummary(
        session_id=session_id,
        total_actions=len(actions),
        successful_actions=sum(1 for a in actions if a.outcome is Outcome.OK),
        failed_actions=sum(1 for a in actions if a.outcome is not Outcome.OK),
        results=results,
        errors=[
            f"step {a.seq} {a.kind}: {a.error_code}: {a.error_text or ''}".rstrip(": ")
            for a in actions
            if a.outcome is not Outcome.OK
        ],
        joined_channels=[
            a.channel
            for a in actions
            if a.kind is ActionKind.JOIN_CHANNEL and a.outcome is Outcome.OK and a.channel
        ],
    )


def _result(action: ActionRecord) -> str:
    where = f" {action.channel}" if action.channel else ""
    if action.outcome is Outcome.OK:
        return f"{action.kind}{where}: ok"
    return f"{action.kind}{where}: {action.outcome} ({action.error_code or 'no code'})"
