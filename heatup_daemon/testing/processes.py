"""Real processes for tests and benchmarks: ``heatup sandbox``, ``heatup llm-stub``."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2

from heatup_daemon.http_server import free_port


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float = 15) -> None:
    """Poll ``url`` until it answers 200; fail early if ``process`` exits."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx2.get(url, timeout=1).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"the process exited with code {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout_s} s")
        time.sleep(0.05)


@contextlib.contextmanager
def sandbox_process(
    *args: str, env: dict[str, str] | None = None, ready_timeout_s: float = 15.0
) -> Iterator[str]:
    """``heatup sandbox ARGS`` on a free loopback port; yields its base URL."""
    with heatup_server("sandbox", *args, env=env, ready_timeout_s=ready_timeout_s) as url:
        yield url


@contextlib.contextmanager
def heatup_server(
    command: str, *args: str, env: dict[str, str] | None = None, ready_timeout_s: float = 15.0
) -> Iterator[str]:
    """``heatup COMMAND ARGS`` (``sandbox``, ``llm-stub``) on a free loopback port; yields
    its base URL once ``/healthz`` answers, and stops it afterwards."""
    heatup = Path(sys.executable).with_name("heatup")
    port = free_port()
    with tempfile.TemporaryFile() as errors:  # shown only if the server fails to start
        process = subprocess.Popen(
            [str(heatup), command, "--port", str(port), *args],
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            try:
                wait_until_healthy(f"{url}/healthz", process, ready_timeout_s)
            except RuntimeError:
                errors.seek(0)
                sys.stderr.write(errors.read().decode(errors="replace"))
                raise
            yield url
        finally:
            process.terminate()
            process.wait(timeout=10)
