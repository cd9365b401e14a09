"""Helpers shared by the benchmarks."""

from __future__ import annotations

from heatup_daemon.testing import free_port, sandbox_process

__all__ = ["free_port", "sandbox_process"]
