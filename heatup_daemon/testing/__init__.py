"""What tests (and benchmarks) of heatup use: fakes of its seams, an in-memory store that
keeps the database's contract, and helpers that run ``heatup`` processes."""

from __future__ import annotations

from heatup_daemon.http_server import free_port
from heatup_daemon.testing.fakes import FakeClock, FakeGateway, RecordingObserver
from heatup_daemon.testing.memory import InMemoryStore
from heatup_daemon.testing.processes import heatup_server, sandbox_process, wait_until_healthy

__all__ = [
    "FakeClock",
    "FakeGateway",
    "InMemoryStore",
    "RecordingObserver",
    "free_port",
    "heatup_server",
    "sandbox_process",
    "wait_until_healthy",
]
