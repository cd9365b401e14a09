"""Records to the systemd journal in its native protocol, read back from a datagram socket
of the test's own: the level as PRIORITY, the sentence as MESSAGE, the context and fields as
``HEATUP_*`` fields, never a secret; big records through a memfd; stdout when the journal is
away. The real journal is ``tests/systemd``'s."""

from __future__ import annotations

import array
import json
import logging
import os
import socket
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from heatup_daemon import journal
from heatup_daemon.cli import main
from heatup_daemon.journal import JournalSender, is_journal_stream
from heatup_daemon.logs import QUIET, SILENT, JournalHandler, configure_logging, log_context

SECRET = "planted-Secret-1234"


def parse(data: bytes) -> dict[str, str]:
    """The native protocol's fields (``NAME=value`` lines, or a name, a length and a value)."""
    fields: dict[str, str] = {}
    while data:
        line, _, rest = data.partition(b"\n")
        if b"=" in line:
            name, _, value = line.partition(b"=")
            data = rest
        else:
            (size,) = struct.unpack("<Q", rest[:8])
            name, value, data = line, rest[8 : 8 + size], rest[9 + size :]
        fields[name.decode()] = value.decode()
    return fields


class Journal:
    """A datagram socket standing in for the journal's: what it received, fields parsed."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(5)
        self.passed_fds = 0

    def receive(self) -> dict[str, str]:
        data, ancillary, _, _ = self.sock.recvmsg(1 << 20, socket.CMSG_SPACE(4))
        for level, kind, payload in ancillary:
            assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
            (fd,) = array.array("i", payload[:4])
            self.passed_fds += 1
            with os.fdopen(fd, "rb") as passed:  # the journal maps it whole, from its start
                passed.seek(0)
                data = passed.read()
        return parse(data)


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Journal]:
    sink = Journal(tmp_path / "journal.socket")
    try:
        yield sink
    finally:
        sink.sock.close()


@pytest.fixture
def log(sink: Journal) -> Iterator[logging.Logger]:
    """A logger whose records go to ``sink`` through the journal handler."""
    # A small send buffer: a record of more than about 64 KB needs a memfd (the journal's
    # own socket takes datagrams up to the kernel's wmem_max, often 208 KB).
    handler = JournalHandler([SECRET], JournalSender(sink.path, send_buffer=65_536))
    logger = logging.getLogger("heatup_daemon.test_journal")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger
    finally:
        logger.removeHandler(handler)
        handler.close()


def test_a_records_level_context_and_fields_are_journal_fields(
    log: logging.Logger, sink: Journal
) -> None:
    with log_context(session=5, run=12):
        log.warning(
            "run %d failed after %.1f s", 12, 3.0, extra={"action": 3, "fields": {"status": "x"}}
        )
        log.info("run %d started", 12, extra={"fields": {"outcomes": {"ok": 2}}})
    log.debug("outside any run")
    warning, info, debug = sink.receive(), sink.receive(), sink.receive()
    assert warning["PRIORITY"] == "4" and info["PRIORITY"] == "6" and debug["PRIORITY"] == "7"
    assert warning["MESSAGE"] == "run 12 failed after 3.0 s"
    assert (warning["HEATUP_SESSION"], warning["HEATUP_RUN"], warning["HEATUP_ACTION"]) == (
        "5",
        "12",
        "3",
    )
    assert warning["HEATUP_STATUS"] == "x" and info["HEATUP_OUTCOMES"] == '{"ok": 2}'
    assert warning["LOGGER"] == "heatup_daemon.test_journal"
    assert warning["SYSLOG_IDENTIFIER"] == "heatup" and warning["CODE_FUNC"]
    assert "HEATUP_ACTION" not in info and "HEATUP_SESSION" not in debug
    assert not any(name.startswith("HEATUP_") and name[7:] in ("TIME", "LEVEL") for name in info)


def test_priorities_follow_the_levels() -> None:
    levels = [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL]
    assert [journal.priority(level) for level in levels] == [7, 6, 4, 3, 2]


def test_an_exception_is_in_fields_of_its_own_with_its_lines(
    log: logging.Logger, sink: Journal
) -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        log.exception("heatup stops after a failure")
    fields = sink.receive()
    assert fields["PRIORITY"] == "3" and fields["MESSAGE"] == "heatup stops after a failure"
    assert fields["HEATUP_ERROR"] == "ValueError: bad\nvalue"
    assert fields["HEATUP_TRACEBACK"].startswith("Traceback (most recent call last):\n")


def test_no_field_carries_a_secret(log: logging.Logger, sink: Journal) -> None:
    try:
        raise RuntimeError(f"gateway said {SECRET.upper()}")
    except RuntimeError:
        log.exception(
            "echo %s; Authorization: Bearer other-token-9876",
            SECRET,
            extra={"fields": {"note": SECRET.lower(), "token": "tok-9876", "url": "x://u:pw@h"}},
        )
    fields = sink.receive()
    text = repr(fields).lower()
    assert "secret-1234" not in text and "9876" not in text and "pw@" not in text
    assert fields["MESSAGE"].startswith("echo ***") and fields["HEATUP_TOKEN"] == "***"


def test_a_record_too_big_for_a_datagram_goes_through_a_memfd(
    log: logging.Logger, sink: Journal
) -> None:
    log.info("a long story: %s", "x" * 1_000_000)
    fields = sink.receive()
    assert sink.passed_fds == 1 and len(fields["MESSAGE"]) == 1_000_000 + len("a long story: ")


def test_without_memfds_a_big_record_is_cut_to_fit(
    log: logging.Logger, sink: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(*args: object) -> int:
        raise PermissionError("memfd_create: not allowed here")

    monkeypatch.setattr(os, "memfd_create", refused)
    log.info("a long story: %s", "é" * 500_000)
    fields = sink.receive()
    assert sink.passed_fds == 0 and fields["MESSAGE"].endswith(" bytes cut)")
    assert len(fields["MESSAGE"].encode()) < journal.CUT_BYTES + 100


def test_when_the_journal_is_away_the_record_is_a_json_line_on_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = JournalHandler([SECRET], JournalSender(str(tmp_path / "no-journal")))
    record = logging.LogRecord("heatup_daemon.x", logging.WARNING, __file__, 1, SECRET, (), None)
    handler.handle(record)
    handler.close()
    line = json.loads(capsys.readouterr().out)
    assert (line["level"], line["logger"], line["message"]) == ("warning", "heatup_daemon.x", "***")


def test_the_journal_is_used_when_journal_stream_names_stdout_or_stderr(tmp_path: Path) -> None:
    with (tmp_path / "stream").open("w") as stream:
        status = os.fstat(stream.fileno())
        named = {"JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}
        assert is_journal_stream(named, [sys.stdin, stream])
        assert not is_journal_stream(named, [sys.stdin])  # inherited, but not ours
        assert not is_journal_stream({}, [stream])


def test_configure_logging_picks_the_journal_under_systemd_and_json_lines_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = logging.getLogger()
    before, level = root.handlers[:], root.level
    # configure_logging quietens other libraries' loggers: as they were, for later tests.
    others = {name: logging.getLogger(name).level for name in (*QUIET, *SILENT)}
    with (tmp_path / "stream").open("w") as stream:
        monkeypatch.setattr(sys, "stdout", stream)
        status = os.fstat(stream.fileno())
        try:
            configure_logging(
                "INFO", environ={"JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}
            )
            assert isinstance(root.handlers[0], JournalHandler)
            root.handlers[0].close()
            configure_logging("INFO", environ={"JOURNAL_STREAM": "1:2"})
            assert type(root.handlers[0]) is logging.StreamHandler
            configure_logging("INFO", json_lines=False, environ={})
            assert type(root.handlers[0]) is logging.StreamHandler
        finally:
            root.handlers[:] = before
            root.setLevel(level)
            for name, was in others.items():
                logging.getLogger(name).setLevel(was)


def test_a_commands_error_line_carries_its_priority_under_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``heatup db upgrade`` in ExecStartPre writes to the journal's stream: ``<3>`` makes
    its one error line an error there (journald reads the prefix, as syslog's)."""
    with (tmp_path / "stream").open("w+") as stream:
        monkeypatch.setattr(sys, "stderr", stream)
        assert main(["--config", str(tmp_path / "missing.toml"), "check-config"]) == 2
        status = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{status.st_dev}:{status.st_ino}")
        assert main(["--config", str(tmp_path / "missing.toml"), "check-config"]) == 2
        stream.seek(0)
        plain, journal_line = stream.read().splitlines()
    assert plain.startswith("heatup: error: ") and journal_line == "<3>" + plain
