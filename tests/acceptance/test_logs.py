"""A run's story in the daemon's JSON log, whoever started it: the run's start with its plan,
each action's end, the run's end with its counts, and the events that change a session or the
pool (a cooldown, needs_attention, a flagged channel). Every line inside a run carries
``session`` and ``run``, and inside an action ``action``."""

from __future__ import annotations

import json
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx2
import pytest

from heatup_daemon.testing import free_port, sandbox_process, wait_until_healthy
from tests.acceptance.conftest import HEATUP
from tests.acceptance.daemons import SQL, Daemon, register, wait_until

# Joins of @privatechan fail CHANNEL_PRIVATE; any other join gets a flood wait.
# One pytest-xdist worker runs this module: its tests read one daemon's story.
pytestmark = pytest.mark.xdist_group("logs")

WORLD = """
[limits]
flood_joins = 0
flood_wait_s = 30

[[sessions]]
ids = "1-20"

[[sessions]]
id = 9001
deleted = "REVOKED"

[[channels]]
username = "privatechan"
kind = "private"

[[channels]]
username = "openchan"
kind = "public"
messages = 5
"""
PRIVATE_JOINERS = (1, 2, 3)  # a channel failing for 3 sessions in a day is flagged
FLOODED = 4
SCHEDULED = 5
REVOKED = 9001


def heatup(env: dict[str, str], *args: str) -> None:
    subprocess.run([str(HEATUP), *args], env=env, check=True, capture_output=True)


def lines_of(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], SQL]:
    """The JSON log of a daemon at DEBUG whose runs were started by the API and the
    schedule, with an LLM that cannot be reached (every plan falls back)."""
    folder = tmp_path_factory.mktemp("logs")
    world = folder / "world.toml"
    world.write_text(WORLD)
    url = f"sqlite:///{folder / 'logs.db'}"
    with sandbox_process("--world", str(world)) as gateway:
        daemon = Daemon(
            url,
            gateway,
            folder,
            HEATUP_SERVICE__LOG_LEVEL="DEBUG",
            HEATUP_LLM__BASE_URL=f"http://127.0.0.1:{free_port()}/v1",
            HEATUP_LLM__API_KEY="sk-unreachable-llm-key",
        )
        heatup(daemon.env, "db", "upgrade")
        heatup(daemon.env, "channels", "add", "@privatechan")  # the pool: one private channel
        for gateway_id in (*PRIVATE_JOINERS, FLOODED, REVOKED):
            register(daemon.env, gateway_id)
        daemon.start()
        try:
            base = f"http://127.0.0.1:{daemon.port}"
            wait_until_healthy(f"{base}/healthz", daemon.process)
            with httpx2.Client(base_url=base, timeout=60) as api:
                for gateway_id in (*PRIVATE_JOINERS, REVOKED):
                    assert api.post(f"/warmup-sync/{gateway_id}").status_code == 200
                heatup(daemon.env, "channels", "add", "@openchan")  # joinable, but flooded
                assert api.post(f"/warmup-sync/{FLOODED}").status_code == 200
            register(daemon.env, SCHEDULED, "--jitter", "0")  # due at once: a scheduled run
            sql = SQL(url)
            wait_until(
                lambda: (
                    sql(
                        "SELECT count(*) FROM warmup_runs WHERE trigger = 'schedule' "
                        "AND status != 'running'"
                    )
                    == [["1"]]
                ),
                timeout_s=30,
            )
        finally:
            code, _ = daemon.stop()
        assert code == 0
    return lines_of(daemon.log), sql


def by_run(lines: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    runs: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        if "run" in line:
            runs[line["run"]].append(line)
    return runs


def test_every_run_tells_its_story(story: tuple[list[dict[str, Any]], SQL]) -> None:
    lines, sql = story
    runs = by_run(lines)
    rows = sql("SELECT id, gateway_session_id, trigger, status FROM warmup_runs ORDER BY id")
    assert {trigger for _, _, trigger, _ in rows} == {"api", "schedule"}
    for run_id, gateway_id, trigger, status in rows:
        told = runs[int(run_id)]
        assert all(line["session"] == int(gateway_id) for line in told), told
        started = [line for line in told if line["message"].startswith(f"run {run_id} started")]
        assert len(started) == 1, told
        assert started[0]["trigger"] == trigger and started[0]["plan_source"] == "fallback"
        actions = sql(
            f"SELECT seq, kind, channel, outcome, error_code FROM warmup_actions "
            f"WHERE run_id = {run_id} ORDER BY seq"
        )
        assert started[0]["actions"] >= len(actions) > 0
        for seq, kind, channel, outcome, code in actions:
            (ended,) = [
                line for line in told if line.get("action") == int(seq) and "outcome" in line
            ]
            assert (ended["kind"], ended["outcome"]) == (kind, outcome)
            assert ended["channel"] == (f"@{channel}" if channel else None)
            assert ended["code"] == (code or None)
            assert ended["level"] == ("debug" if outcome == "ok" else "info")
        (finished,) = [line for line in told if line.get("status") == status]
        assert sum(finished["outcomes"].values()) == len(actions)
        assert finished["message"].startswith(f"run {run_id} {status}")


def test_the_fallback_warning_names_its_run(story: tuple[list[dict[str, Any]], SQL]) -> None:
    lines, _ = story
    fallbacks = [line for line in lines if "built-in planner plans this run" in line["message"]]
    assert fallbacks
    assert all("session" in line and "run" in line for line in fallbacks)


def test_session_and_pool_events_are_told(story: tuple[list[dict[str, Any]], SQL]) -> None:
    lines, _ = story
    cooldown = [line for line in lines if "flood_wait_s" in line]
    assert [line["session"] for line in cooldown] == [FLOODED, SCHEDULED]  # both join openchan
    assert cooldown[0]["level"] == "warning" and "cools down until" in cooldown[0]["message"]
    attention = [line for line in lines if "state_reason" in line]
    assert [line["session"] for line in attention] == [REVOKED]
    assert "REVOKED" in attention[0]["state_reason"]
    flagged = [line for line in lines if "flagged_reason" in line]
    assert len(flagged) == 1 and flagged[0]["channel"] == "@privatechan"
    assert flagged[0]["session"] == PRIVATE_JOINERS[-1]


def test_every_line_in_an_action_names_it(story: tuple[list[dict[str, Any]], SQL]) -> None:
    lines, _ = story
    in_runs = [line for line in lines if "run" in line]
    assert all("session" in line for line in in_runs)
    gateway_lines = [line for line in in_runs if line["logger"].startswith("heatup_daemon.gateway")]
    assert gateway_lines and all("action" in line for line in gateway_lines)
    flagged = [line for line in lines if "flagged_reason" in line]
    assert all("action" in line for line in flagged)


def test_wire_level_chatter_stays_out_even_at_debug(
    story: tuple[list[dict[str, Any]], SQL],
) -> None:
    lines, _ = story
    loggers = {line["logger"].split(".")[0] for line in lines}
    assert loggers.isdisjoint({"sqlalchemy", "aiosqlite", "httpcore2", "httpcore"}), loggers
