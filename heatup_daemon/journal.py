"""The systemd journal's native protocol: a log record as fields an operator can filter.

systemd names a service's journal stream in ``$JOURNAL_STREAM`` (``device:inode``). When that
is heatup's own stdout or stderr (not a stream a parent passed on while heatup writes
elsewhere), ``logs`` sends each record to the journal instead, as one datagram of fields to
``/run/systemd/journal/socket``:

- ``PRIORITY``: the level (``journalctl -p warning`` shows warnings and worse);
- ``MESSAGE``: the human sentence;
- ``HEATUP_<KEY>`` for every other key of the record's JSON line, upper case:
  ``HEATUP_SESSION`` (the gateway session id), ``HEATUP_RUN``, ``HEATUP_ACTION``, the
  record's own fields (``HEATUP_STATUS``, ``HEATUP_CHANNEL``...), an exception's
  ``HEATUP_ERROR`` and ``HEATUP_TRACEBACK``; nested values as JSON text;
- ``LOGGER``, ``CODE_FILE``, ``CODE_LINE``, ``CODE_FUNC`` and ``SYSLOG_IDENTIFIER=heatup``.

Every field is masked as the JSON line is (``redact``, the key beside its value). A record
too large for one datagram is written to a sealed memfd whose descriptor is passed instead
(as ``sd_journal_send`` does); where that fails, long values are cut to fit. When the journal
cannot be reached at all, the record is written to stdout as its JSON line (the stream still
reaches the journal).
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import socket
import struct
import sys
from collections.abc import Iterable, Mapping
from typing import IO, Final

from heatup_daemon.redact import redact

SOCKET: Final = "/run/systemd/journal/socket"
IDENTIFIER: Final = "heatup"
# What a datagram may carry once memfds fail: each value cut to this many bytes.
CUT_BYTES: Final = 16_384
SEND_BUFFER: Final = 8 * 1024 * 1024  # as sd_journal_send asks for (the kernel may cap it)
_NOT_A_NAME: Final = re.compile(r"[^A-Z0-9_]")
_SEALS: Final = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL


def is_journal_stream(
    environ: Mapping[str, str] = os.environ, streams: Iterable[IO[str]] = ()
) -> bool:
    """Whether ``$JOURNAL_STREAM`` names one of ``streams`` (stdout and stderr by default)."""
    named = environ.get("JOURNAL_STREAM", "")
    if not named:
        return False
    for stream in tuple(streams) or (sys.stdout, sys.stderr):
        try:
            status = os.fstat(stream.fileno())
        except (OSError, ValueError, AttributeError):
            continue
        if f"{status.st_dev}:{status.st_ino}" == named:
            return True
    return False


def priority(levelno: int) -> int:
    """syslog's priority of a logging level."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def field_name(key: str) -> str:
    """``HEATUP_`` and the key in the journal's alphabet (upper-case letters, digits, ``_``)."""
    return ("HEATUP_" + _NOT_A_NAME.sub("_", key.upper()))[:64]


def encode(fields: Iterable[tuple[str, str]]) -> bytes:
    """The native protocol's form: ``NAME=value`` lines, or for a value with a newline the
    name, its length as 64-bit little-endian, and the value."""
    out = bytearray()
    for name, value in fields:
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            out += name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += name.encode() + b"=" + data + b"\n"
    return bytes(out)


def record_fields(
    entry: Mapping[str, object], record: logging.LogRecord, secrets: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """The journal's fields for ``record`` whose JSON line's keys and values are ``entry``
    (``logs.entry_of``), each masked."""
    known = tuple(secrets)

    def masked(key: str, value: object) -> str:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        return redact(f"{key}={text}", known).partition("=")[2]

    fields = [
        ("PRIORITY", str(priority(record.levelno))),
        ("SYSLOG_IDENTIFIER", IDENTIFIER),
        ("MESSAGE", masked("message", entry.get("message", ""))),
        ("LOGGER", record.name),
    ]
    code = {"CODE_FILE": record.pathname, "CODE_LINE": record.lineno, "CODE_FUNC": record.funcName}
    fields.extend((name, str(value)) for name, value in code.items() if value)
    for key, value in entry.items():
        if key not in ("time", "level", "logger", "message") and value is not None:
            fields.append((field_name(key), masked(key, value)))
    return fields


class JournalSender:
    """Datagrams to the journal's socket; a memfd for one too large."""

    def __init__(self, address: str = SOCKET, send_buffer: int = SEND_BUFFER) -> None:
        self._address = address
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        with contextlib.suppress(OSError):
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)

    def send(self, fields: list[tuple[str, str]]) -> None:
        """Send one record's fields; ``OSError`` if the journal cannot take them."""
        data = encode(fields)
        try:
            self._socket.sendto(data, self._address)
            return
        except OSError as exc:
            if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                raise
        try:
            self._send_memfd(data)
        except OSError:
            self._socket.sendto(encode(_cut(fields)), self._address)

    def _send_memfd(self, data: bytes) -> None:
        fd = os.memfd_create("heatup-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
            self._socket.sendmsg([], rights, 0, self._address)
        finally:
            os.close(fd)

    def close(self) -> None:
        self._socket.close()


def _cut(fields: list[tuple[str, str]]) -> list[tuple[str, str]]:
    cut = []
    for name, value in fields:
        data = value.encode("utf-8", "replace")
        if len(data) > CUT_BYTES:
            more = len(data) - CUT_BYTES
            value = data[:CUT_BYTES].decode("utf-8", "ignore") + f"... ({more} bytes cut)"
        cut.append((name, value))
    return cut
