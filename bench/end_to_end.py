"""End to end: the real ``heatup run`` against ``heatup sandbox`` at time scale 0, on SQLite and
on PostgreSQL, and beside it a bare httpx2 loop making the same gateway calls.

For each database, in one run against one sandbox:

1. **sustained**: SESSIONS sessions on a PERIOD schedule (by default 1,000 every 20 s:
   about 250 actions/s offered), measured for SECONDS after a warm-up: actions/s, dispatch
   lag p50 and p99 (start minus due time, of the runs started in the window), heatup's own
   CPU per action, its RSS, and database rows written per action (PostgreSQL counts inserts,
   updates and deletes; SQLite keeps no such count, so its figure is rows inserted);
2. **saturated**: four times that demand, at CONCURRENCY runs in flight: the most actions/s
   heatup gets, and its CPU per action there;
3. **bare loop**: CONCURRENCY workers replaying, with httpx2 and nothing else, the gateway
   calls of the actions heatup made in step 2 (bodies built beforehand): its actions/s and
   CPU per action. heatup's actions/s as a share of the loop's, and its CPU per action as a
   multiple of the loop's.

heatup runs with its defaults, the join ramp and the channel pace included. The sessions are
a pool that has settled in: old accounts, each already a member of JOINED of the pool's
channels, so their plans read channels, browse, idle and now and then join one. The
sandbox's world lifts Telegram's join flood limit so that neither side spends the run in
flood waits. Run from a checkout: ``.venv/bin/python -m bench.end_to_end [--seconds 60]
[--databases sqlite,postgresql] [--joined 8] [--sessions 1000]`` (``--joined 0``: sessions
that have joined nothing yet, whose plans mostly browse and idle, as the channel pace holds
back their joins). Settings other than the defaults name the results file, e.g.
``end_to_end_joined_0.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import uvloop

from bench.common import (
    Database,
    Heatup,
    cpu_seconds,
    database,
    percentile,
    rss_mb,
    sandbox_for,
    workspace,
    write_results,
)
from heatup_daemon.config.sections import GatewaySettings
from heatup_daemon.gateway import HttpGateway, tl
from heatup_daemon.pool import DEFAULT_POOL

SESSIONS = 1000
PERIOD_S = 20
CONCURRENCY = 100
WARMUP_S = 15
# Channels each session has joined already: a pool that has settled in, whose plans read.
JOINED = 8
INVOKE = {"retries": 3, "timeout": 15, "sleep_threshold": 0}
INSERTED_TABLES = ("warmup_runs", "warmup_actions", "channel_joins", "session_channels")


def settings(concurrency: int) -> dict[str, str]:
    return {
        "HEATUP_EXECUTOR__TIME_SCALE": "0",
        "HEATUP_SCHEDULER__MAX_CONCURRENT_RUNS": str(concurrency),
        "HEATUP_GATEWAY__MAX_CONNECTIONS": str(concurrency),
    }


def inserted_rows(db: Database) -> int:
    return sum(int(db.scalar(f"SELECT count(*) FROM {table}")) for table in INSERTED_TABLES)


def stamp(db: Database, at: datetime) -> str:
    text = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return f"'{text}'" if db.kind == "sqlite" else f"'{text}+00'::timestamptz"


def lags(db: Database, since: datetime, until: datetime) -> list[float]:
    rows = db.sql(
        "SELECT started_at, due_at FROM warmup_runs WHERE trigger = 'schedule' "
        f"AND status != 'skipped' AND started_at >= {stamp(db, since)} "
        f"AND started_at < {stamp(db, until)}"
    )
    return [(_time(started) - _time(due)).total_seconds() for started, due in rows]


def _time(value: Any) -> datetime:
    moment: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def window(db: Database, daemon: Heatup, seconds: float) -> dict[str, Any]:
    """What heatup did in the next ``seconds``."""
    actions0 = db.scalar("SELECT count(*) FROM warmup_actions")
    cpu0, inserted0, written0 = cpu_seconds(daemon.pid), inserted_rows(db), db.rows_written()
    since, started = datetime.now(UTC), time.perf_counter()
    rss = [rss_mb(daemon.pid)]
    while time.perf_counter() - started < seconds:
        time.sleep(min(5.0, seconds - (time.perf_counter() - started)))
        rss.append(rss_mb(daemon.pid))
    elapsed = time.perf_counter() - started
    until = datetime.now(UTC)
    actions = int(db.scalar("SELECT count(*) FROM warmup_actions")) - int(actions0)
    cpu = cpu_seconds(daemon.pid) - cpu0
    written1 = db.rows_written()
    delays = lags(db, since, until)
    figures = {
        "seconds": round(elapsed, 1),
        "actions": actions,
        "actions_per_s": round(actions / elapsed, 1),
        "cpu_ms_per_action": round(1000 * cpu / max(actions, 1), 3),
        "cpu_share_of_one_core": round(cpu / elapsed, 2),
        "rss_mb_max": round(max(rss), 1),
        "runs_started": len(delays),
        "lag_p50_s": round(percentile(delays, 0.5), 3),
        "lag_p99_s": round(percentile(delays, 0.99), 3),
        "rows_inserted_per_action": round((inserted_rows(db) - inserted0) / max(actions, 1), 2),
    }
    if written0 is not None and written1 is not None:
        figures["rows_written_per_action"] = round((written1 - written0) / max(actions, 1), 2)
    return figures


def recorded_calls(db: Database, limit: int = 20_000) -> list[tuple[int, str, str | None]]:
    """(gateway id, kind, channel) of heatup's latest actions, oldest first."""
    rows = db.sql(
        "SELECT r.gateway_session_id, a.kind, a.channel FROM warmup_actions a "
        f"JOIN warmup_runs r ON r.id = a.run_id ORDER BY a.run_id DESC, a.seq LIMIT {limit}"
    )
    return [(int(gateway_id), str(kind), channel) for gateway_id, kind, channel in rows]


async def channel_answers(gateway_url: str) -> dict[str, tuple[int, int, int | None]]:
    """Each pool channel's id, access hash and newest message id, as the sandbox gives them:
    what the bare loop's reads ask for, worked out before it is timed."""
    gateway = HttpGateway(GatewaySettings(base_url=gateway_url))
    try:
        answers = {}
        for username, *_ in DEFAULT_POOL:
            read = await gateway.read_history(1, username)
            answers[username] = (read.channel.channel_id, read.channel.access_hash, read.max_id)
        return answers
    finally:
        await gateway.aclose()


def bodies(
    kind: str, channel: str | None, answers: dict[str, tuple[int, int, int | None]]
) -> list[tuple[str, dict[str, Any]]]:
    """The gateway calls heatup makes for one action: (rpc method, JSON body)."""
    if kind == "browse_dialogs":
        return [("invoke", {"method": "invoke", "params": {"query": tl.get_dialogs(20), **INVOKE}})]
    if kind == "join_channel" and channel:
        return [("join_chat", {"method": "join_chat", "params": {"chat_id": f"@{channel}"}})]
    if kind == "read_messages" and channel:
        channel_id, access_hash, max_id = answers[channel]
        queries = [tl.resolve_username(channel), tl.get_history(channel_id, access_hash, 20)]
        if max_id is not None:
            queries.append(tl.read_history(channel_id, access_hash, max_id))
        return [("invoke", {"method": "invoke", "params": {"query": q, **INVOKE}}) for q in queries]
    return []  # idle: no call


async def bare_loop(
    gateway_url: str,
    calls: list[tuple[int, str, str | None]],
    concurrency: int,
    seconds: float,
) -> dict[str, Any]:
    answers = await channel_answers(gateway_url)
    planned = [(gateway_id, bodies(kind, channel, answers)) for gateway_id, kind, channel in calls]
    actions = itertools.cycle(planned)
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    done = requests = 0
    async with httpx2.AsyncClient(base_url=f"{gateway_url}/api/external", limits=limits) as client:
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done, requests
            while time.perf_counter() < stop:
                gateway_id, action = next(actions)
                for method, body in action:
                    response = await client.post(f"/sessions/{gateway_id}/rpc/{method}", json=body)
                    response.json()
                    requests += 1
                done += 1

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "seconds": round(elapsed, 1),
        "actions_per_s": round(done / elapsed, 1),
        "requests_per_action": round(requests / max(done, 1), 2),
        "cpu_ms_per_action": round(1000 * cpu / max(done, 1), 3),
    }


def one_database(
    kind: str, seconds: float, sessions: int, period_s: int, joined: int
) -> dict[str, Any]:
    with workspace() as folder, database(kind, folder) as db:
        db.add_sessions(sessions * 4, f"{period_s}s", period_s - 1, enabled=False, joined=joined)
        with sandbox_for(folder, sessions * 4, flood_joins=1_000_000) as gateway:
            return measure(db, folder, gateway, seconds, sessions)


def measure(
    db: Database, folder: Path, gateway: str, seconds: float, sessions: int
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    print(f"\n{db.kind}: {sessions} sessions, then {4 * sessions} (saturated)")
    db.sql(f"UPDATE sessions SET enabled = {_true(db)} WHERE gateway_session_id <= {sessions}")
    daemon = Heatup(db.url, gateway, folder, settings(CONCURRENCY))
    try:
        daemon.start()
        time.sleep(WARMUP_S)
        figures["sustained"] = window(db, daemon, seconds)
        print(f"  sustained: {figures['sustained']}")
        db.sql(f"UPDATE sessions SET enabled = {_true(db)}")
        time.sleep(WARMUP_S)
        figures["saturated"] = window(db, daemon, max(30.0, seconds / 2))
        print(f"  saturated: {figures['saturated']}")
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    calls = recorded_calls(db)
    figures["action_mix"] = dict(Counter(kind for _, kind, _ in calls))
    bare = uvloop.run(bare_loop(gateway, calls, CONCURRENCY, max(30.0, seconds / 2)))
    figures["bare_httpx2_loop"] = bare
    saturated = figures["saturated"]
    figures["heatup_share_of_bare_actions_per_s"] = round(
        saturated["actions_per_s"] / bare["actions_per_s"], 3
    )
    figures["heatup_cpu_per_action_over_bare"] = round(
        saturated["cpu_ms_per_action"] / bare["cpu_ms_per_action"], 2
    )
    print(f"  bare loop: {bare}")
    print(
        f"  heatup/bare: {figures['heatup_share_of_bare_actions_per_s']:.0%} of the actions/s, "
        f"{figures['heatup_cpu_per_action_over_bare']}x the CPU per action"
    )
    return figures


def _true(db: Database) -> str:
    return "1" if db.kind == "sqlite" else "true"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="the sustained window")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--sessions", type=int, default=SESSIONS)
    parser.add_argument("--period", type=int, default=PERIOD_S, help="schedule, seconds")
    parser.add_argument(
        "--joined",
        type=int,
        default=JOINED,
        help="channels each session has joined already (0: none yet)",
    )
    args = parser.parse_args()
    results = {
        "concurrency": CONCURRENCY,
        "sessions": args.sessions,
        "period_s": args.period,
        "offered_runs_per_s": round(args.sessions / args.period, 1),
        "channels_joined_per_session": args.joined,
    }
    for kind in args.databases.split(","):
        results[kind] = one_database(kind, args.seconds, args.sessions, args.period, args.joined)
    name = "end_to_end"
    if args.joined != JOINED:
        name += f"_joined_{args.joined}"
    if args.sessions != SESSIONS:
        name += f"_{args.sessions}_sessions"
    write_results(name, results)


if __name__ == "__main__":
    main()
