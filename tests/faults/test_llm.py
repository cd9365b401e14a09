"""An LLM that fails every way it can: errors, junk, hostile answers, and hanging. Every run
still gets a valid plan; while the LLM hangs, at most one run per breaker trial waits for it."""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest

from heatup_daemon.enums import ActionKind
from heatup_daemon.pool import DEFAULT_POOL
from heatup_daemon.testing import heatup_server, sandbox_process
from heatup_daemon.validation import USERNAME_RE
from tests.acceptance.daemons import Daemon, sqlite_with_sessions
from tests.figures import Report
from tests.judging import load_audit

SESSIONS = 40
BREAKER_FAILURES = 2
COOLOFF_S = 3.0
TIMEOUT_S = 1.0
POOL = {username for username, *_ in DEFAULT_POOL}
# (scenario, seconds): the LLM's mood over the run.
PHASES = (
    ("good", 5),
    ("server_error", 5),
    ("malformed", 5),
    ("hostile", 5),
    ("timeout", 12),
    ("prose", 4),
    ("outside_pool", 4),
    ("good", 5),
)


def assert_valid(plan: dict[str, Any]) -> None:
    actions = plan["actions"]
    assert 3 <= len(actions) <= 7, plan
    for action in actions:
        kind = ActionKind(action["action"])
        if kind.names_channel:
            assert USERNAME_RE.fullmatch(action["channel"]) and action["channel"] in POOL, action
        else:
            assert action["channel"] is None, action


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_an_llm_that_fails_every_way(tmp_path: Path, long_variant: bool, report: Report) -> None:
    phases = PHASES * (4 if long_variant else 1)
    database = tmp_path / "llm.db"
    url = sqlite_with_sessions(database, SESSIONS, "10s", 5)
    audit_path = tmp_path / "audit.jsonl"
    # (from, to, when each LLM request meanwhile arrived)
    hangs: list[tuple[datetime, datetime, list[float]]] = []
    with (
        sandbox_process("--audit-log", str(audit_path)) as gateway,
        heatup_server("llm-stub") as llm,
        httpx2.Client(base_url=llm) as stub,
    ):
        daemon = Daemon(
            url,
            gateway,
            tmp_path,
            HEATUP_EXECUTOR__TIME_SCALE="0.02",
            HEATUP_LLM__BASE_URL=f"{llm}/v1",
            HEATUP_LLM__API_KEY="sk-planted-llm-key-0123456789",
            HEATUP_LLM__TIMEOUT_S=str(TIMEOUT_S),
            HEATUP_LLM__MAX_RETRIES="0",
            HEATUP_LLM__BREAKER_FAILURES=str(BREAKER_FAILURES),
            HEATUP_LLM__BREAKER_COOLOFF_S=str(COOLOFF_S),
        ).start()
        try:
            for scenario, seconds in phases:
                stub.put("/_stub/scenario", json={"scenario": scenario}).raise_for_status()
                before, started = len(stub.get("/_stub/arrivals").json()), datetime.now(UTC)
                time.sleep(seconds)
                if scenario == "timeout":
                    arrivals = stub.get("/_stub/arrivals").json()[before:]
                    hangs.append((started, datetime.now(UTC), arrivals))
            code, _ = daemon.stop(timeout_s=60)
        finally:
            daemon.kill()
    assert code == 0, daemon.output()[-3000:]
    assert "sk-planted" not in daemon.output()

    with sqlite3.connect(database) as db:
        plans = db.execute(
            "SELECT plan_source, plan, started_at FROM warmup_runs WHERE status != 'skipped'"
        ).fetchall()
    assert plans and all(source in ("llm", "fallback") for source, _, _ in plans)
    reasons: Counter[str] = Counter()
    for source, document, _ in plans:
        plan = json.loads(document)
        assert_valid(plan)
        if source == "fallback":
            reasons[(plan["fallback_reason"] or "").split(":")[0][:40]] += 1
    audit = load_audit(audit_path)
    asked = {e["channel"] for e in audit if e["op"] in ("join_chat", "resolve_username")}
    assert asked <= POOL  # nothing hostile reached the gateway
    assert not [e for e in audit if e["outcome"] == "INPUT_METHOD_INVALID"]
    planned_in_hangs, before_open, trials_made = [], [], []
    for started, ended, arrivals in hangs:
        # While the breaker is closed, the runs that start planning call the LLM (they cannot
        # know yet); it opens once BREAKER_FAILURES calls have timed out. From then on, one
        # trial per cooloff at most, and every other run plans at once with the fallback.
        assert len(arrivals) >= BREAKER_FAILURES
        opened = sorted(arrivals)[BREAKER_FAILURES - 1] + TIMEOUT_S
        later = [at for at in arrivals if at > opened + 0.5]
        trials = math.ceil((ended.timestamp() - opened) / COOLOFF_S) + 1
        assert len(later) <= trials, (later, opened, trials)
        planned = [p for p in plans if started <= _utc(p[2]) <= ended]
        assert len(planned) > 2 * len(arrivals)  # the rest planned at once, with the fallback
        planned_in_hangs.append(len(planned))
        before_open.append(len(arrivals) - len(later))
        trials_made.append(len(later))
    report(
        {
            "runs": len(plans),
            "plans by source": dict(Counter(source for source, _, _ in plans)),
            "fallback reasons": dict(reasons),
            "LLM requests while it hung (per hang)": [len(a) for _, _, a in hangs],
            "of which before the breaker opened": before_open,
            "of which breaker trials": trials_made,
            "runs planned while it hung (per hang)": planned_in_hangs,
        }
    )


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)
