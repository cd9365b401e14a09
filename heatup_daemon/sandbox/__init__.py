"""A runnable emulation of the session gateway (GATEWAY.md) for the demo, tests and
benchmarks: ``heatup sandbox``, or ``SandboxApp`` as an ASGI application."""

from __future__ import annotations

from heatup_daemon.sandbox.app import SandboxApp
from heatup_daemon.sandbox.faults import Faults, parse_faults
from heatup_daemon.sandbox.world import World, default_world, load_world

__all__ = ["Faults", "SandboxApp", "World", "default_world", "load_world", "parse_faults"]
