"""Each closed set is one enum, and what is derived from it agrees with it: the database's
CHECK constraints (as the models declare them; the schema test holds the migrations to the
models), the label values of the metrics that carry it, and the words of the log."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import pytest
from sqlalchemy import CheckConstraint

from heatup_daemon.db.models import Base
from heatup_daemon.enums import (
    ActionKind,
    Job,
    JoinRefusal,
    JoinStatus,
    LLMOutcome,
    Outcome,
    PlanSource,
    RunStatus,
    SessionState,
    SkipCause,
    Standing,
    Trigger,
)
from heatup_daemon.logs import JsonFormatter
from heatup_daemon.metrics import Metrics
from heatup_daemon.planner.model import Plan
from heatup_daemon.records import Run, SessionCounts
from heatup_daemon.run.events import RunEnd, RunLog
from heatup_daemon.session import admit
from heatup_daemon.testing import FakeClock, InMemoryStore
from tests.builders import join_record, session_spec
from tests.worlds import World, quick_settings

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)


def check_values(table: str, name: str) -> set[str]:
    """The values a table's ``name IN (...)`` CHECK constraint allows."""
    constraints = [
        c
        for c in Base.metadata.tables[table].constraints
        if isinstance(c, CheckConstraint) and re.search(rf"\b{name} IN \(", str(c.sqltext))
    ]
    assert len(constraints) == 1, (table, name)
    return set(re.findall(r"'([^']*)'", str(constraints[0].sqltext)))


@pytest.mark.parametrize(
    ("table", "column", "values"),
    [
        ("sessions", "state", SessionState),
        ("warmup_runs", "trigger", Trigger),
        ("warmup_runs", "status", RunStatus),
        ("warmup_runs", "plan_source", PlanSource),
        ("warmup_actions", "kind", ActionKind),
        ("warmup_actions", "outcome", Outcome),
        ("channel_joins", "status", JoinStatus),
    ],
)
def test_check_constraints_allow_exactly_the_enum(
    table: str, column: str, values: type[StrEnum]
) -> None:
    assert check_values(table, column) == {v.value for v in values}


def labels(metrics: Metrics, name: str, label: str) -> set[str]:
    return {
        sample.labels[label]
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == name
    }


def test_metric_label_sets_are_the_enums() -> None:
    metrics = Metrics()
    metrics.set_gauges(SessionCounts(), {}, 0)
    assert labels(metrics, "heatup_slots_skipped_total", "cause") == set(SkipCause)
    assert labels(metrics, "heatup_job_failures_total", "job") == set(Job)
    assert labels(metrics, "heatup_job_overruns_total", "job") == set(Job)
    assert labels(metrics, "heatup_llm_requests_total", "outcome") == set(LLMOutcome)
    assert labels(metrics, "heatup_plans_total", "source") == set(PlanSource)
    assert labels(metrics, "heatup_joins_dropped_total", "reason") == {
        r for r in JoinRefusal if r.looks_after_accounts
    }
    assert labels(metrics, "heatup_actions_total", "kind") == set(ActionKind)
    assert labels(metrics, "heatup_actions_total", "outcome") == set(Outcome)
    assert labels(metrics, "heatup_runs_total", "status") == set(RunStatus) - {RunStatus.RUNNING}
    assert labels(metrics, "heatup_runs_total", "trigger") == set(Trigger)
    assert labels(metrics, "heatup_sessions", "standing") == set(Standing)


async def test_the_log_speaks_the_enums_values(caplog: pytest.LogCaptureFixture) -> None:
    """A run's story and a claim's skipped slots, as the JSON log writes them: every closed
    word is its enum's value, never a Python name (``RunStatus.SUCCEEDED``)."""
    store = InMemoryStore(FakeClock(NOW))
    session = admit(await store.add_session(session_spec(5)), NOW)
    run = Run(1, session, Trigger.API, NOW, NOW)
    formatter = JsonFormatter()
    story = RunLog()
    with caplog.at_level(logging.DEBUG, logger="heatup_daemon"):
        story.run_started(run, Plan((), PlanSource.FALLBACK))
        story.action_ended(run, join_record(1, "nasa", Outcome.OK, NOW))
        story.run_ended(run, RunEnd(RunStatus.PARTIAL, None, (), 1.0))
    lines = [json.loads(formatter.format(entry)) for entry in caplog.records]
    assert (lines[0]["trigger"], lines[0]["plan_source"]) == ("api", "fallback")
    assert (lines[1]["kind"], lines[1]["outcome"]) == ("join_channel", "ok")
    assert lines[2]["status"] == "partial" and set(lines[2]["outcomes"]) == set(Outcome)
    assert "run 1 partial after" in lines[2]["message"]
    assert "join_channel @nasa: ok" in lines[1]["message"]

    # A claim that skipped slots says so with the causes' own words.
    world = World(store, settings=quick_settings(misfire_grace_s=60), clock=FakeClock(NOW))
    await world.node()
    await world.scheduler.reconcile()
    store.sessions[1].update(
        next_run_at=NOW - timedelta(hours=3), next_nominal_at=NOW - timedelta(hours=3)
    )
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="heatup_daemon"):
        await world.tick()
    summary = next(
        r.getMessage() for r in caplog.records if "recorded as skipped" in r.getMessage()
    )
    causes = re.findall(r"(\d+) (\w+)", summary.split("(", 1)[1])
    assert causes and {word for _, word in causes} <= set(SkipCause), summary
