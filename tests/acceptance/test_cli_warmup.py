"""``heatup warmup`` and ``heatup history`` through the installed entry point, against
``heatup sandbox`` and ``heatup llm-stub`` running as their own processes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from heatup_daemon.testing import heatup_server, sandbox_process
from tests.acceptance.conftest import Heatup, Result

TOKEN = "acceptance-gateway-token"
LLM_KEY = "sk-acceptance-llm-key"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    audit = tmp_path_factory.mktemp("sandbox") / "audit.jsonl"
    with sandbox_process("--audit-log", str(audit), env={"HEATUP_GATEWAY__TOKEN": TOKEN}) as url:
        yield url, audit


@pytest.fixture(scope="module")
def llm() -> Iterator[str]:
    with heatup_server("llm-stub") as url:
        yield f"{url}/v1"


@pytest.fixture
def run(heatup: Heatup, gateway: tuple[str, Path]) -> Heatup:
    env = {"HEATUP_GATEWAY__BASE_URL": gateway[0], "HEATUP_GATEWAY__TOKEN": TOKEN}

    def call(*args: str, env_extra: dict[str, str] | None = None) -> Result:
        return heatup(*args, env={**env, **(env_extra or {})})

    assert call("db", "upgrade").code == 0
    return call


def audit_count(gateway: tuple[str, Path]) -> int:
    return len(gateway[1].read_text().splitlines())


def test_warmup_then_history(run: Heatup, gateway: tuple[str, Path], llm: str) -> None:
    assert run("sessions", "add", "--gateway-id", "5", "--schedule", "6h").code == 0
    first = run("warmup", "5", "--time-scale", "0")
    assert first.code == 0, first.stderr
    assert "plan from fallback: no LLM configured" in first.stdout
    assert "run 1 succeeded" in first.stdout
    assert first.stdout.count(" ok") >= 3  # a live line per action
    second = run(
        "warmup",
        "5",
        "--time-scale",
        "0",
        env_extra={"HEATUP_LLM__BASE_URL": llm, "HEATUP_LLM__API_KEY": LLM_KEY},
    )
    assert second.code == 0, second.stderr
    assert "plan from llm (gpt-4o-mini)" in second.stdout
    for result in (first, second):
        assert TOKEN not in result.stdout + result.stderr
        assert LLM_KEY not in result.stdout + result.stderr

    history = run("history", "5")
    assert history.code == 0
    assert "run 2" in history.stdout and "run 1" in history.stdout
    assert "ACTION" in history.stdout and "join_channel" in history.stdout
    runs = json.loads(run("history", "5", "--json").stdout)
    # One spelling of a channel, @username: in the live lines, the history and its JSON.
    channels = [a["channel"] for r in runs for a in r["actions"] if a["channel"]]
    channels += [a["channel"] for r in runs for a in r["plan"]["actions"] if a["channel"]]
    assert channels and all(re.fullmatch(r"@[a-z][a-z0-9_]{3,31}", c) for c in channels)
    for text in (first.stdout, second.stdout, history.stdout):
        assert not re.search(r"(?<![@\w])(" + "|".join(c[1:] for c in channels) + r")\b", text)
    assert [(r["id"], r["plan_source"], r["status"]) for r in runs] == [
        (2, "llm", "succeeded"),
        (1, "fallback", "succeeded"),
    ]
    assert all(r["trigger"] == "cli" and r["actions"] for r in runs)


def test_dry_run_calls_nothing(run: Heatup, gateway: tuple[str, Path]) -> None:
    assert run("sessions", "add", "--gateway-id", "6", "--schedule", "6h").code == 0
    before = audit_count(gateway)
    result = run("warmup", "6", "--dry-run")
    assert result.code == 0 and "plan from fallback" in result.stdout
    assert "1. " in result.stdout
    assert audit_count(gateway) == before
    assert json.loads(run("history", "6", "--json").stdout) == []


def test_warmup_of_a_lost_session(run: Heatup) -> None:
    assert run("sessions", "add", "--gateway-id", "9001", "--schedule", "6h").code == 0
    result = run("warmup", "9001", "--time-scale", "0")
    assert "session REVOKED" in result.stdout or "session REVOKED" in result.stderr
    shown = json.loads(run("sessions", "show", "9001", "--json").stdout)
    assert shown["state"] == "needs_attention"
    again = run("warmup", "9001", "--time-scale", "0")
    assert again.code == 1 and "needs attention" in again.stderr
    assert len(again.stderr.splitlines()) == 1


def test_warmup_refuses_bad_input(run: Heatup) -> None:
    for args, fragment in (
        (["warmup", "404"], "no session with gateway id 404"),
        (["warmup", "x"], "positive integer"),
        (["history", "0"], "positive integer"),
        (["warmup", "5", "--time-scale", "fast"], "invalid float"),
        (["warmup", "5", "--time-scale", "-1"], "between 0 and 100"),
    ):
        result = run(*args)
        assert result.code == 2 and fragment in result.stderr, (args, result.stderr)
        assert len(result.stderr.splitlines()) == 1
