"""Whole runs: runner, executor and HTTP gateway client against ``heatup sandbox`` in its own
process, on a real database. The history a run writes must equal what the sandbox saw."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from heatup_daemon.config.sections import PoolSettings, RampSettings
from heatup_daemon.config.settings import Settings
from heatup_daemon.db.repository import Repository
from heatup_daemon.enums import ActionKind, PlanSource, Trigger
from heatup_daemon.errors import AlreadyRunning, SessionNotRunnable
from heatup_daemon.lease import NodeLease
from heatup_daemon.metrics import Metrics
from heatup_daemon.planner.model import Plan, PlanContext, PlannedAction, step
from heatup_daemon.records import RunView
from heatup_daemon.run.runner import Runner, RunResult
from heatup_daemon.session import SessionRecord, validate_record
from heatup_daemon.validation import validate_channel
from heatup_daemon.wiring import build_parts, node_lease
from tests.builders import session_spec
from tests.sandboxes import SandboxControl, running_sandbox

# Per gateway operation, what one action asks of the sandbox, in order.
CALLS = {
    "join_channel": ["join_chat"],
    "read_messages": ["resolve_username", "get_history", "read_history"],
    "browse_dialogs": ["get_dialogs"],
    "idle": [],
}
TRANSIENT = {"5xx", "429", "hang", "drop", "nonjson"}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxControl]:
    with running_sandbox(tmp_path_factory) as control:
        yield control


def settings_for(sandbox: SandboxControl, database_url: str) -> Settings:
    return Settings(
        node_name="test-node",
        database={"url": database_url},  # the repository's: its clock is the node's
        gateway={
            "base_url": sandbox.url,
            "retry_attempts": 3,
            "retry_backoff_initial_s": 0.001,
            "retry_backoff_max_s": 0.002,
            "read_timeout_s": 2,
        },
        executor={"time_scale": 0},
        planner={"seed": 11},
    )


@dataclass
class Built:
    """A node's parts as the daemon builds them, against the sandbox, holding its lease."""

    settings: Settings
    repository: Repository
    lease: NodeLease
    parts: Built

    @property
    def runner(self) -> Runner:
        return self.parts.runner

    def scripted(self, *actions: PlannedAction) -> Runner:
        """A runner of the same node whose plan is ``actions``, with no join limit in the
        way (scripted plans are about the gateway's answers)."""
        unlimited = self.settings.model_copy(
            update={
                "ramp": RampSettings(stages=((0, 100),)),
                "pool": PoolSettings(max_joins_per_channel_per_hour=100),
            }
        )
        return build_parts(
            unlimited,
            self.repository,
            self.lease.clock,
            Metrics(),
            self.lease,
            gateway=self.parts.gateway,
            planner=ScriptedPlanner(*actions),
        ).runner


@pytest.fixture
async def parts(
    repository: Repository, sandbox: SandboxControl, database_url: str
) -> AsyncIterator[Built]:
    sandbox.reset()
    settings = settings_for(sandbox, database_url)
    await repository.seed_channels(settings.channels)
    lease = node_lease(settings, repository)
    async with lease.held():
        built = build_parts(settings, repository, lease.clock, Metrics(), lease)
        yield Built(settings, repository, lease, built)
        await built.aclose()


OLD_ACCOUNT = datetime(2020, 1, 1, tzinfo=UTC)  # eight joins a day: the ramp stays out of the way


async def register(
    repository: Repository, gateway_id: int, account_created_at: datetime | None = OLD_ACCOUNT
) -> SessionRecord:
    spec = session_spec(
        gateway_id, "6h", timezone="Europe/Berlin", account_created_at=account_created_at
    )
    return await repository.add_session(spec)


class ScriptedPlanner:
    def __init__(self, *actions: PlannedAction) -> None:
        self.actions = actions

    async def plan(self, context: PlanContext) -> Plan:
        return Plan(self.actions, PlanSource.FALLBACK, fallback_reason="scripted")


async def run_now(runner: Runner, gateway_id: int, trigger: Trigger = Trigger.CLI) -> RunResult:
    return await runner.run(await runner.start(gateway_id, trigger))


ATTEMPTS = 3  # gateway.retry_attempts in settings_for
# The error code an action records for the sandbox's final outcome of its failing call.
RECORDED_CODE = {
    "session_deleted": "SESSION_GONE",
    "session_frozen": "SESSION_FROZEN",
    "AUTH_KEY_UNREGISTERED": "SESSION_GONE",
    "SESSION_REVOKED": "SESSION_GONE",
    "USER_DEACTIVATED": "SESSION_GONE",
    "USER_DEACTIVATED_BAN": "SESSION_GONE",
}


def _call(audit: list[dict[str, Any]], pos: int, operation: str, session: int) -> tuple[str, int]:
    """Consume the attempts of one gateway call; its final outcome and the next position."""
    for _ in range(ATTEMPTS):
        entry = audit[pos]
        pos += 1
        assert (entry["op"], entry["session"]) == (operation, session), entry
        if entry["outcome"] not in TRANSIENT:
            return entry["outcome"], pos
    return "transient", pos


def assert_history_matches_audit(runs: list[RunView], audit: list[dict[str, Any]]) -> None:
    """Walk every action in order and consume exactly the sandbox records it caused."""
    pos = 0
    for run in sorted(runs, key=lambda r: (r.gateway_session_id, r.id)):
        for action in run.actions:
            final = "ok"
            for operation in CALLS[action.kind]:
                final, pos = _call(audit, pos, operation, run.gateway_session_id)
                if final != "ok":
                    break
            if final == "ok":
                assert action.outcome == "ok", action
            else:
                assert action.outcome == "failed", (action, final)
                assert action.error_code == RECORDED_CODE.get(final, final), (action, final)
    assert pos == len(audit), f"the sandbox saw {len(audit) - pos} calls the history lacks"


async def test_history_equals_the_audit_log(
    repository: Repository, parts: Built, sandbox: SandboxControl
) -> None:
    sessions = [await register(repository, uid) for uid in (21, 22, 23)]
    for _ in range(3):
        for session in sessions:
            result = await run_now(parts.runner, int(str(session.gateway_session_id)))
            assert result.outcome.status == "succeeded", result.outcome
    runs = [run for s in sessions for run in await repository.history(s.gateway_session_id)]
    assert len(runs) == 9 and all(run.plan_source == "fallback" for run in runs)
    assert sum(len(run.actions) for run in runs) >= 27
    audit = sandbox.audit()
    assert len(audit) >= 9
    # Runs of one session are sequential; sort the audit by session, keeping time order.
    by_session = sorted(audit, key=lambda entry: entry["session"])
    assert_history_matches_audit(runs, by_session)


async def test_history_equals_the_audit_log_under_transient_faults(
    repository: Repository, parts: Built, sandbox: SandboxControl
) -> None:
    sandbox.reset("5xx=0.25,nonjson=0.05,seed=5")
    await register(repository, 31)
    for _ in range(6):
        await run_now(parts.runner, 31)
    runs = await repository.history(31)
    audit = sandbox.audit()
    assert any(entry["outcome"] in TRANSIENT for entry in audit)
    assert_history_matches_audit(runs, audit)


async def test_joins_are_remembered_and_planned_around(
    repository: Repository, parts: Built
) -> None:
    session = await register(repository, 41)
    joined: set[str] = set()
    for _ in range(4):
        result = await run_now(parts.runner, 41)
        planned = {a.channel for a in result.plan.actions if a.action == "join_channel"}
        assert not planned & joined  # never joins a channel twice
        joined |= {
            a.channel
            for a in result.outcome.actions
            if a.kind == "join_channel" and a.outcome == "ok" and a.channel
        }
    now = parts.lease.clock.now()
    facts = await repository.planning_facts(validate_record(session, now), now)
    assert facts.joined == joined and len(joined) >= 4
    assert len(facts.recent_runs) == 3 and facts.recent_runs[0].status == "succeeded"


async def test_a_new_account_joins_one_channel_a_day(repository: Repository, parts: Built) -> None:
    session = await register(repository, 42, account_created_at=None)  # registered today
    for _ in range(4):
        result = await run_now(parts.runner, 42)
        assert result.outcome.status == "succeeded"  # it still reads, browses and idles
    runs = await repository.history(42)
    joins = [a for run in runs for a in run.actions if a.kind == "join_channel"]
    assert len(joins) == 1
    facts = await repository.warmth_facts(session.id, parts.lease.clock.now())
    assert (facts.joins_last_24h, facts.joins_last_7d) == (1, 1)
    assert len(facts.channels_joined) == 1 and facts.runs_last_7d == {"succeeded": 4}


async def test_flood_wait_cools_the_session_down(
    repository: Repository, parts: Built, sandbox: SandboxControl
) -> None:
    await register(repository, 51)
    joins = [
        step(ActionKind.JOIN_CHANNEL, name)
        for name in ("telegram", "durov", "tginfo", "nasa", "natgeo", "python", "espn")
    ]
    result = await run_now(parts.scripted(*joins), 51)
    assert result.outcome.status == "partial"
    assert [a.outcome for a in result.outcome.actions] == ["ok"] * 5 + ["failed"]
    view = await repository.get_session(51)
    assert view.cooldown_until is not None and view.last_run_at is not None
    assert (
        72 <= (view.cooldown_until - result.outcome.actions[-1].finished_at).total_seconds() <= 74
    )
    audit = sandbox.audit()
    assert [e["outcome"] for e in audit] == ["ok"] * 5 + ["FLOOD_WAIT"]
    assert not any(e["during_flood"] for e in audit)
    with pytest.raises(SessionNotRunnable, match="cooling down until"):
        await parts.runner.start(51, Trigger.CLI)
    assert len(sandbox.audit()) == 6  # no call while the wait lasts


@pytest.mark.parametrize(
    ("uid", "reason"), [(9001, "REVOKED"), (9100, "frozen"), (9202, "SESSION_REVOKED")]
)
async def test_lost_sessions_need_attention(
    repository: Repository, parts: Built, uid: int, reason: str
) -> None:
    await register(repository, uid)
    plan = (
        step(ActionKind.BROWSE_DIALOGS),
        step(ActionKind.JOIN_CHANNEL, "telegram"),
        step(ActionKind.IDLE, None, 5),
    )
    result = await run_now(parts.scripted(*plan), uid)
    assert result.outcome.status == "failed" and len(result.outcome.actions) == 1
    view = await repository.get_session(uid)
    assert view.state == "needs_attention" and reason in (view.state_reason or "")
    with pytest.raises(SessionNotRunnable, match="needs attention"):
        await parts.runner.start(uid, Trigger.CLI)
    enabled = await repository.set_session_enabled(uid, True)  # the admin's re-enable
    assert enabled.state == "active"


async def test_channel_problems_continue_and_flag_the_channel(
    repository: Repository, parts: Built
) -> None:
    for name in ("privatechan", "inviteonly"):
        spec = validate_channel(username=name, title=None, category="odd", description=None)
        await repository.add_channel(spec)
    plan = (
        step(ActionKind.JOIN_CHANNEL, "privatechan"),
        step(ActionKind.JOIN_CHANNEL, "inviteonly"),
        step(ActionKind.BROWSE_DIALOGS),
    )
    for uid in (61, 62, 63):
        session = await register(repository, uid)
        result = await run_now(parts.scripted(*plan), uid)
        assert result.outcome.status == "partial"
        codes = [a.error_code for a in result.outcome.actions]
        assert codes == ["CHANNEL_PRIVATE", "INVITE_REQUEST_SENT", None]
    flags = {c.username: c.flagged_reason for c in await repository.list_channels()}
    assert (
        flags["privatechan"] is not None
        and "CHANNEL_PRIVATE for 3 sessions" in flags["privatechan"]
    )
    assert flags["inviteonly"] is not None and flags["telegram"] is None
    now = parts.lease.clock.now()
    facts = await repository.planning_facts(validate_record(session, now), now)
    assert "privatechan" not in {c.username for c in facts.pool}  # flagged: not planned


async def test_runs_refused_before_anything_is_written(
    repository: Repository, parts: Built, sandbox: SandboxControl
) -> None:
    session = await register(repository, 71)
    await repository.set_session_enabled(71, False)
    with pytest.raises(SessionNotRunnable, match="disabled"):
        await parts.runner.start(71, Trigger.API)
    await repository.set_session_enabled(71, True)
    async with repository.engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO warmup_runs (session_id, gateway_session_id, trigger, due_at, status, "
                "node, started_at) VALUES (:id, 71, 'api', :now, 'running', 'other', :now)"
            ),
            {"id": session.id, "now": parts.lease.clock.now().replace(tzinfo=None)},
        )
    with pytest.raises(AlreadyRunning, match="in flight"):
        await parts.runner.start(71, Trigger.CLI)
    assert len(await repository.history(71)) == 1
    assert sandbox.audit() == []


async def test_a_run_row_tells_the_whole_story(repository: Repository, parts: Built) -> None:
    await register(repository, 81)
    result = await run_now(parts.runner, 81)
    run = await repository.get_run(result.run.id)
    assert (run.status, run.trigger, run.node, run.plan_source) == (
        "succeeded",
        "cli",
        "test-node",
        "fallback",
    )
    assert run.finished_at is not None and run.heartbeat_at is not None
    assert run.plan["fallback_reason"] == "no LLM configured"
    assert run.plan is not None
    assert [a["action"] for a in run.plan["actions"]] == [a.action for a in result.plan.actions]
    assert [a.seq for a in run.actions] == list(range(1, len(result.plan.actions) + 1))
    assert all(a.gateway_latency_s is not None for a in run.actions if a.kind != "idle")
