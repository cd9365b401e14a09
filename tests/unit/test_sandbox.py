"""The sandbox's own contract: fault specs, world files, and HTTP details (in-process)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from heatup_daemon.errors import InvalidValue
from heatup_daemon.sandbox import SandboxApp, default_world, load_world, parse_faults
from heatup_daemon.sandbox.faults import FaultDraw, Faults, describe
from heatup_daemon.sandbox.world import World, parse_world


def test_fault_spec() -> None:
    faults = parse_faults(
        "latency=5-20ms, 5xx=0.1, 429=0.05,hang=0.01,drop=0.02,nonjson=0.03,"
        "rpc_error=0.04,flood=0.05,seed=7,hang_s=3,flood_s=2-4s"
    )
    assert faults == Faults(
        latency_min_s=0.005,
        latency_max_s=0.02,
        error_5xx=0.1,
        error_429=0.05,
        hang=0.01,
        drop=0.02,
        nonjson=0.03,
        rpc_error=0.04,
        flood=0.05,
        hang_s=3.0,
        flood_min_s=2.0,
        flood_max_s=4.0,
        seed=7,
    )
    assert parse_faults("") == Faults()
    assert parse_faults("latency=0.2s") == Faults(latency_min_s=0.2, latency_max_s=0.2)
    assert describe(Faults()) == "none"
    assert "error_5xx=0.5" in describe(parse_faults("5xx=0.5"))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("5xx", "has no value"),
        ("5xx=2", "between 0 and 1"),
        ("5xx=x", "not a number"),
        ("latency=fast", "latency 'fast'"),
        ("latency=20-5ms", "low end is above"),
        ("teapot=1", "unknown fault 'teapot'"),
        ("5xx=0.6,429=0.6", "add up to more than 1"),
        ("seed=1.5", "not a number"),
    ],
)
def test_bad_fault_specs(spec: str, message: str) -> None:
    with pytest.raises(InvalidValue, match=message):
        parse_faults(spec)


def test_fault_draws_follow_the_shares() -> None:
    draw = FaultDraw(parse_faults("5xx=0.25,drop=0.25,seed=1"))
    drawn = [draw.fault() for _ in range(4000)]
    assert 800 < drawn.count("5xx") < 1200 and 800 < drawn.count("drop") < 1200
    assert set(drawn) == {"5xx", "drop", None}
    again = FaultDraw(parse_faults("5xx=0.25,drop=0.25,seed=1"))
    assert [again.fault() for _ in range(4000)] == drawn  # seeded: reproducible


def test_default_world() -> None:
    world = default_world()
    ids = {s.id for s in world.sessions}
    assert set(range(1, 1001)) <= ids
    assert {s.id: s.deleted for s in world.sessions if s.deleted} == {
        9001: "REVOKED",
        9002: "DEACTIVATED",
        9003: "AUTH_KEY_UNREGISTERED",
        9004: "AUTH_KEY_DUPLICATED",
        9005: "PASSWORD_NEEDED",
    }
    assert [s.id for s in world.sessions if s.frozen] == [9100]
    kinds = {c.username: c.kind for c in world.channels}
    assert kinds["telegram"] == "public" and kinds["privatechan"] == "private"
    assert kinds["inviteonly"] == "invite_only" and kinds["nosuchchannel"] == "nonexistent"
    assert all(c.messages > 0 for c in world.channels if c.kind == "public")
    assert len({c.channel_id for c in world.channels}) == len(world.channels)


def test_world_file(tmp_path: Path) -> None:
    path = tmp_path / "world.toml"
    path.write_text(
        '[limits]\nflood_joins = 2\n[[sessions]]\nids = "1-3"\njoined = ["@Telegram"]\n'
        '[[sessions]]\nid = 9\nfrozen = true\n[[channels]]\nusername = "telegram"\nmessages = 5\n'
    )
    world = load_world(path)
    assert world.limits.flood_joins == 2
    assert [(s.id, s.joined, s.frozen) for s in world.sessions] == [
        (1, ("telegram",), False),
        (2, ("telegram",), False),
        (3, ("telegram",), False),
        (9, (), True),
    ]
    json_path = tmp_path / "world.json"
    json_path.write_text('{"sessions": [{"id": 4}], "channels": []}')
    assert [s.id for s in load_world(json_path).sessions] == [4]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "a world is a table"),
        ({"planets": []}, "unknown keys"),
        ({"sessions": [{"id": 0}]}, "positive integer"),
        ({"sessions": [{"id": 1}, {"id": 1}]}, "listed twice"),
        ({"sessions": [{"id": 1, "deleted": "NAPPING"}]}, "deleted must be one of"),
        ({"sessions": [{"id": 1, "mood": "grumpy"}]}, "unknown session keys"),
        ({"channels": [{"username": "x'y"}]}, "not a public username"),
        ({"channels": [{"username": "okname", "kind": "secret"}]}, "kind must be one of"),
    ],
)
def test_bad_worlds(data: Any, message: str) -> None:
    with pytest.raises(InvalidValue, match=message):
        parse_world(data)


def test_bad_world_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidValue, match="world file"):
        load_world(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[limits\n")
    with pytest.raises(InvalidValue, match=f"world file {broken}"):
        load_world(broken)


TOKEN = "unit-token"


@pytest.fixture
async def client() -> AsyncIterator[httpx2.AsyncClient]:
    world = World(default_world().limits, default_world().sessions[:3], default_world().channels)
    app = SandboxApp(world, token=TOKEN)
    transport = httpx2.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx2.AsyncClient(
        transport=transport, base_url="http://sandbox", headers=headers
    ) as http:
        yield http


async def test_auth(client: httpx2.AsyncClient) -> None:
    assert (await client.get("/healthz", headers={"Authorization": ""})).status_code == 200
    missing = await client.get("/api/external/sessions/1", headers={"Authorization": ""})
    assert (missing.status_code, missing.json()) == (403, {"detail": "Not authenticated"})
    wrong = await client.get("/api/external/sessions/1", headers={"Authorization": "Bearer no"})
    assert wrong.status_code == 401
    assert (await client.get("/api/external/sessions/1")).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "kind"),
    [
        ("GET", "/api/external/sessions/abc", None, 422, "int_parsing"),
        ("GET", "/api/external/sessions/0", None, 422, "greater_than_equal"),
        ("GET", "/api/external/sessions/77", None, 404, None),
        ("GET", "/api/external/nothing", None, 404, None),
        ("POST", "/api/external/sessions/1", None, 405, None),
        ("POST", "/api/external/sessions/1/rpc/invoke", b"{not json", 422, "json_invalid"),
        ("POST", "/api/external/sessions/1/rpc/invoke", b"[1]", 422, "model_attributes_type"),
        ("POST", "/api/external/sessions/1/rpc/invoke", b'{"params": {}}', 422, "missing"),
        (
            "POST",
            "/api/external/sessions/1/rpc/invoke",
            b'{"method": "join_chat"}',
            422,
            "literal_error",
        ),
        (
            "POST",
            "/api/external/sessions/1/rpc/join_chat",
            b'{"params": {"chat_id": "@a"}}',
            422,
            "string_pattern_mismatch",
        ),
        ("POST", "/api/external/sessions/1/rpc/join_chat", b"x" * 70_000, 413, None),
    ],
)
async def test_malformed_requests(
    client: httpx2.AsyncClient,
    method: str,
    path: str,
    body: bytes | None,
    status: int,
    kind: str | None,
) -> None:
    response = await client.request(method, path, content=body)
    assert response.status_code == status
    if kind is not None:
        assert response.json()["detail"][0]["type"] == kind


async def test_unknown_invoke_query_is_an_rpc_error(client: httpx2.AsyncClient) -> None:
    body = {"method": "invoke", "params": {"query": "__import__('os').system('id')"}}
    response = await client.post("/api/external/sessions/1/rpc/invoke", json=body)
    assert response.status_code == 200
    assert response.json()["success"] is False
    assert "INPUT_METHOD_INVALID" in response.json()["error"]


async def test_control_surface(client: httpx2.AsyncClient) -> None:
    bad = await client.put("/_sandbox/faults", json={"faults": "teapot=1"})
    assert bad.status_code == 422 and "unknown fault" in bad.json()["detail"]
    assert (await client.put("/_sandbox/faults", json={"faults": "5xx=1"})).status_code == 200
    assert (await client.get("/api/external/sessions/1")).status_code == 503
    await client.put("/_sandbox/faults", json={"faults": ""})
    body = {"method": "join_chat", "params": {"chat_id": "@telegram"}}
    assert (await client.post("/api/external/sessions/1/rpc/join_chat", json=body)).json()[
        "success"
    ]
    assert (await client.get("/_sandbox/sessions/1")).json()["joined"] == ["telegram"]
    await client.post("/_sandbox/reset")
    assert (await client.get("/_sandbox/sessions/1")).json()["joined"] == []
    assert (await client.get("/_sandbox/sessions/99")).status_code == 404


async def test_an_injected_flood_wait_holds_the_session_like_telegram(
    client: httpx2.AsyncClient,
) -> None:
    await client.put("/_sandbox/faults", json={"faults": "flood=1,flood_s=30-30s,seed=1"})
    dialogs = {
        "method": "invoke",
        "params": {
            "query": "pylogram.raw.functions.messages.GetDialogs(offset_date=0, offset_id=0, "
            "offset_peer=pylogram.raw.types.InputPeerEmpty(), limit=20, hash=0)"
        },
    }
    first = (await client.post("/api/external/sessions/1/rpc/invoke", json=dialogs)).json()
    assert "FLOOD_WAIT" in first["error"] and "30 seconds" in first["error"]
    await client.put("/_sandbox/faults", json={"faults": ""})
    second = (await client.post("/api/external/sessions/1/rpc/invoke", json=dialogs)).json()
    assert "FLOOD_WAIT" in second["error"]  # the wait holds without the fault
    other = (await client.post("/api/external/sessions/2/rpc/invoke", json=dialogs)).json()
    assert other["success"]  # and only for that session
