"""``heatup sandbox``: the emulated session gateway on a loopback port."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from heatup_daemon.cli.common import say, settings_of
from heatup_daemon.enums import ExitCode


def add_parsers(commands: Any) -> None:
    sandbox = commands.add_parser("sandbox", help="run the emulated session gateway")
    sandbox.add_argument("--host", default="127.0.0.1", help="address (default: 127.0.0.1)")
    sandbox.add_argument("--port", type=int, default=8081, help="port (default: 8081)")
    sandbox.add_argument("--world", type=Path, help="TOML or JSON world file")
    sandbox.add_argument("--audit-log", type=Path, help="append a JSON line per request here")
    sandbox.add_argument("--faults", default="", help='e.g. "latency=5-20ms,5xx=0.05,seed=1"')
    sandbox.set_defaults(handler=run_sandbox)

    stub = commands.add_parser("llm-stub", help="run an OpenAI-compatible stub LLM")
    stub.add_argument("--host", default="127.0.0.1", help="address (default: 127.0.0.1)")
    stub.add_argument("--port", type=int, default=8082, help="port (default: 8082)")
    stub.add_argument(
        "--scenario", default="good", type=_scenario, help="how it answers (good, or a failure)"
    )
    stub.set_defaults(handler=run_llm_stub)


def _scenario(name: str) -> str:
    from heatup_daemon.sandbox.llm_stub import SCENARIOS

    if name not in SCENARIOS:
        raise argparse.ArgumentTypeError(f"{name!r} is not one of {', '.join(SCENARIOS)}")
    return name


def run_sandbox(args: argparse.Namespace) -> int:
    from heatup_daemon.http_server import ReadyServer, server_config
    from heatup_daemon.sandbox import SandboxApp, default_world, load_world, parse_faults
    from heatup_daemon.sandbox.faults import describe

    settings = settings_of(args)
    world = load_world(args.world) if args.world else default_world()
    faults = parse_faults(args.faults)
    token = settings.gateway.token.get_secret_value() if settings.gateway.token else None
    app = SandboxApp(world, faults=faults, token=token, audit_path=args.audit_log, keep_audit=False)
    auth = "bearer token required" if token else "no token"
    ready = (
        f"heatup sandbox on http://{args.host}:{args.port}: {len(world.sessions)} sessions, "
        f"{len(world.channels)} channels, faults: {describe(faults)}, {auth}"
    )
    server = ReadyServer(
        server_config(app, args.host, args.port, loop="uvloop", lifespan="on"),
        lambda: say(ready),
    )
    try:
        return _serve(server)
    finally:
        app.close()


def run_llm_stub(args: argparse.Namespace) -> int:
    from heatup_daemon.http_server import ReadyServer, server_config
    from heatup_daemon.sandbox.llm_stub import LLMStubApp

    app = LLMStubApp(args.scenario)
    ready = f"heatup llm-stub on http://{args.host}:{args.port}/v1: scenario {args.scenario}"
    config = server_config(app, args.host, args.port, loop="uvloop", lifespan="on")
    return _serve(ReadyServer(config, lambda: say(ready)))


def _serve(server: Any) -> int:
    try:
        server.run()
    except SystemExit:  # uvicorn's own exit when it cannot bind; it has said why
        return ExitCode.FAILURE
    return ExitCode.OK if server.started else ExitCode.FAILURE
