"""The notify protocol on real AF_UNIX datagram sockets, path and abstract."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from heatup_daemon.systemd import Notifier, watchdog_interval_s


def receive(sock: socket.socket) -> list[str]:
    sock.settimeout(2)
    return sock.recv(4096).decode().splitlines()


def test_path_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(path)})
        assert notifier.ready("3 sessions\nscheduled")
        message = receive(sock)
        assert message[0] == "READY=1" and message[1] == "STATUS=3 sessions scheduled"
        assert message[2] == f"MAINPID={os.getpid()}"
        assert notifier.watchdog() and receive(sock) == ["WATCHDOG=1"]
        assert notifier.status("busy") and receive(sock) == ["STATUS=busy"]
        assert notifier.stopping() and receive(sock) == ["STOPPING=1", "STATUS=stopping"]


def test_abstract_socket() -> None:
    name = f"heatup-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": "@" + name})
        assert notifier.watchdog() and receive(sock) == ["WATCHDOG=1"]


def test_status_is_one_line() -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        name = f"heatup-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name)
        Notifier("@" + name).status("line one\nline two")
        assert receive(sock) == ["STATUS=line one line two"]


def test_without_systemd_nothing_is_sent(caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier.from_environ({})
    assert not notifier.enabled and not notifier.ready("x") and not notifier.watchdog()


def test_a_broken_socket_is_reported_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier(str(tmp_path / "nobody-listens"))
    assert not notifier.watchdog() and not notifier.watchdog()
    assert len([r for r in caplog.records if "cannot notify systemd" in r.getMessage()]) == 1


def test_watchdog_interval() -> None:
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 15.0
    pid = str(os.getpid())
    assert watchdog_interval_s({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": pid}) == 2.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval_s({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "junk"}) is None
