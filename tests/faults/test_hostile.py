"""Hostile input against a daemon on a public bind: traversal and injection in ids, oversized
headers and bodies, wrong methods, empty, missing and wrong tokens; hostile usernames in the
channel pool and in the LLM's answers. Everything is refused with the right code, memory
stays bounded, nothing hostile reaches the gateway or a TL query, and the planted secrets
appear in no log line, row or answer."""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import subprocess
from collections import Counter
from pathlib import Path

import httpx2
import pytest

from heatup_daemon.pool import DEFAULT_POOL
from heatup_daemon.testing import heatup_server, sandbox_process
from tests.acceptance import daemons
from tests.acceptance.conftest import HEATUP
from tests.acceptance.daemons import Daemon, register, wait_until
from tests.figures import Report
from tests.judging import load_audit

API_TOKEN = "planted-api-token-0123456789"
GATEWAY_TOKEN = "planted-gateway-token-0123456789"
LLM_KEY = "sk-plantedllmkey0123456789abcdef"
SECRETS = (API_TOKEN, GATEWAY_TOKEN, LLM_KEY)
POOL = {username for username, *_ in DEFAULT_POOL}
HOSTILE_CHANNELS = ("x'); import os #", "../../etc/passwd", "du'rov", "@evil'or'1'='1")

# (method, path, status) with the token: each refused before anything is done.
REQUESTS = [
    ("POST", "/warmup/..%2F..%2Fetc%2Fpasswd", 404),
    ("POST", "/warmup/1%00", 422),
    ("POST", "/warmup/1;DROP%20TABLE%20sessions", 422),
    ("POST", "/warmup/1'%20OR%20'1'='1", 422),
    ("POST", "/warmup/-1", 422),
    ("POST", "/warmup/0", 422),
    ("POST", f"/warmup/{2**63}", 422),
    ("POST", "/warmup/1e3", 422),
    ("GET", "/runs/1.5", 422),
    ("GET", "/sessions/%2e%2e/runs", 422),
    ("GET", "/sessions/5/runs?limit=-1", 422),
    ("GET", "/sessions/5/runs?limit=99999999999999999999", 422),
    ("PUT", "/warmup/5", 405),
    ("DELETE", "/sessions", 405),
    ("PATCH", "/runs/1", 405),
    ("GET", "/../../etc/passwd", 404),
    ("GET", "/nothing", 404),
    ("GET", "/ui/sessions/..%2F..%2Fetc%2Fpasswd", 404),
    ("GET", "/ui/sessions/1%00", 422),
    ("GET", "/ui/sessions/-5", 422),
    ("GET", "/ui?sort=id;DROP%20TABLE%20sessions", 422),
    ("GET", "/ui?order=sideways", 422),
    ("GET", "/ui?page=0", 422),
    ("GET", "/ui?page=99999999999999999999", 422),
    ("GET", "/ui/static/../../config.py", 404),
    ("DELETE", "/ui/channels", 405),
]
# The console without the token or its cookie: a browser is sent to the login form.
CONSOLE = ("/ui", "/ui/sessions/5", "/ui/channels")


def rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1])


def raw_request(port: int, head: bytes) -> bytes:
    """A request no polite client would send, over a plain socket."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        return sock.recv(4096)


@pytest.mark.timeout(300)
def test_hostile_input(tmp_path: Path, report: Report) -> None:
    database = tmp_path / "hostile.db"
    url = f"sqlite:///{database}"
    env = {**os.environ, "HEATUP_DATABASE__URL": url}
    subprocess.run([str(HEATUP), "db", "upgrade"], env=env, check=True, capture_output=True)
    for gateway_id in (5, 6):
        register(env, gateway_id)
    audit_path = tmp_path / "audit.jsonl"
    statuses: Counter[str] = Counter()
    answers: list[str] = []
    secrets_env = {"HEATUP_GATEWAY__TOKEN": GATEWAY_TOKEN}
    with (
        sandbox_process("--audit-log", str(audit_path), env=secrets_env) as gateway,
        heatup_server("llm-stub", "--scenario", "hostile") as llm,
    ):
        daemon = Daemon(
            url,
            gateway,
            tmp_path,
            HEATUP_API__HOST="0.0.0.0",
            HEATUP_API__TOKEN=API_TOKEN,
            HEATUP_LLM__BASE_URL=f"{llm}/v1",
            HEATUP_LLM__API_KEY=LLM_KEY,
            **secrets_env,
        ).start()
        base = f"http://127.0.0.1:{daemon.port}"
        try:
            wait_until(lambda: daemons.answers(f"{base}/healthz"), timeout_s=30)
            with sqlite3.connect(database, timeout=10) as db:  # an admin's hostile pool rows
                db.executemany(
                    "INSERT INTO channels (username, enabled) VALUES (?, 1)",
                    [(name,) for name in HOSTILE_CHANNELS],
                )
            assert daemon.process is not None
            before = rss_kb(daemon.process.pid)
            with httpx2.Client(base_url=base, timeout=30) as client:
                # No, empty or wrong tokens: 401 on every guarded route.
                for header in (None, "", "Bearer", "Bearer nope", "Basic x", API_TOKEN):
                    headers = {} if header is None else {"Authorization": header}
                    for path in ("/sessions", "/openapi.json", "/runs/1"):
                        response = client.get(path, headers=headers)
                        statuses[f"no valid token -> {response.status_code}"] += 1
                        assert response.status_code == 401, (path, header)
                    response = client.post("/warmup/5", headers=headers)
                    assert response.status_code == 401
                    for path in CONSOLE:
                        response = client.get(path, headers=headers)
                        statuses[f"console, no valid token -> {response.status_code}"] += 1
                        assert response.status_code == 303, (path, header)
                        assert response.headers["location"].startswith("/ui/login?next=")
                wrong = client.post("/ui/login", data={"token": "guess-" + API_TOKEN[:-6]})
                assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
                huge = client.post("/ui/login", content=b"token=" + b"x" * 2_000_000)
                assert huge.status_code == 413
                client.headers["Authorization"] = f"Bearer {API_TOKEN}"
                for method, path, status in REQUESTS:
                    response = client.request(method, path)
                    statuses[f"{method} hostile id or path -> {response.status_code}"] += 1
                    assert response.status_code == status, (method, path, response.text)
                    answers.append(response.text)
                for _ in range(8):  # 8 x 2 MB of headers
                    response = client.get("/sessions", headers={"X-Big": "x" * 2_000_000})
                    assert response.status_code == 431
                assert client.post("/warmup/5", content=b"x" * 2_000_000).status_code == 413
                assert b" 431 " in raw_request(
                    daemon.port, b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
                )
                assert b" 400 " in raw_request(daemon.port, b"\x00\x01garbage\r\n\r\n")
                statuses["oversized or malformed -> 431/413/400"] += 11
                # Runs whose plans come from an LLM answering hostile channel names.
                for gateway_id in (5, 6):
                    done = client.post(f"/warmup-sync/{gateway_id}")
                    assert done.status_code == 200, done.text
                    answers.append(done.text)
                answers.append(client.get("/sessions").text)
                answers.append(client.get("/sessions/5/runs").text)
                for path in CONSOLE:  # the hostile pool rows, shown escaped
                    page = client.get(path)
                    assert page.status_code == 200, path
                    answers.append(page.text)
                assert "x&#39;); import os #" in answers[-1]
            grown_kb = rss_kb(daemon.process.pid) - before
            # The pool is checked by every reconcile pass (0.5 s here): wait for it.
            wait_until(lambda: _flagged(database) == len(HOSTILE_CHANNELS), timeout_s=10)
            code, _ = daemon.stop()
        finally:
            daemon.kill()
    assert code == 0
    audit = load_audit(audit_path)
    asked = {e["channel"] for e in audit if e["op"] in ("join_chat", "resolve_username")}
    assert asked and asked <= POOL, asked  # only pool channels ever reached the gateway
    assert not [e for e in audit if e["outcome"] in ("INPUT_METHOD_INVALID", "invalid")]
    assert grown_kb < 30_000, grown_kb  # 16 MB of headers were never held
    flagged = _flagged(database)
    assert flagged == len(HOSTILE_CHANNELS)
    with contextlib.closing(sqlite3.connect(database)) as db:
        dump = "\n".join(db.iterdump())
    everything = "\n".join([daemon.output(), dump, *answers]).lower()
    for secret in SECRETS:
        assert secret.lower() not in everything, secret
    report(
        {
            "requests by outcome": dict(statuses),
            "RSS growth over the attack, KB": grown_kb,
            "hostile pool rows flagged": flagged,
            "gateway calls (all for pool channels)": len(audit),
            "planted secrets found": 0,
        }
    )


def _flagged(database: Path) -> int:
    """Pool rows the daemon has marked unusable."""
    with contextlib.closing(sqlite3.connect(database, timeout=10)) as db:
        row = db.execute("SELECT count(*) FROM channels WHERE invalid_reason IS NOT NULL")
        return int(row.fetchone()[0])
