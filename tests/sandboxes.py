"""The project's sandbox gateway as integration tests drive it: one process a module, its
faults set and its state read through its control routes, its audit log read since the
last reset."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest

from heatup_daemon.testing import sandbox_process
from tests.judging import load_audit


class SandboxControl:
    def __init__(self, url: str, audit_path: Path, token: str | None = None) -> None:
        self.url = url
        self.audit_path = audit_path
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        self._control = httpx2.Client(base_url=url, headers=headers)
        self._seen = 0

    def reset(self, faults: str = "") -> None:
        """Forget every session's state, set ``faults``, and start a new audit."""
        self._control.post("/_sandbox/reset").raise_for_status()
        self.faults(faults)
        self._seen = len(load_audit(self.audit_path))

    def faults(self, spec: str) -> None:
        self._control.put("/_sandbox/faults", json={"faults": spec}).raise_for_status()

    def state(self, uid: int) -> dict[str, Any]:
        response = self._control.get(f"/_sandbox/sessions/{uid}")
        response.raise_for_status()
        return dict(response.json())

    def audit(self) -> list[dict[str, Any]]:
        """The audit records since the last reset."""
        return load_audit(self.audit_path)[self._seen :]

    def close(self) -> None:
        self._control.close()


@contextmanager
def running_sandbox(
    tmp_path_factory: pytest.TempPathFactory, token: str | None = None
) -> Iterator[SandboxControl]:
    """A sandbox gateway process, with its audit log, that requires ``token`` if given."""
    audit = tmp_path_factory.mktemp("sandbox") / "audit.jsonl"
    env = {} if token is None else {"HEATUP_GATEWAY__TOKEN": token}
    with sandbox_process("--audit-log", str(audit), env=env) as url:
        control = SandboxControl(url, audit, token)
        try:
            yield control
        finally:
            control.close()
