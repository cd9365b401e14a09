"""Logging for the daemon: one JSON object per line on stdout; under systemd, when stdout is
the journal's stream, the same records as journal fields (``journal``: the level is the
priority, the context and the fields are ``HEATUP_*`` fields); a short text form for people.

Every line logged inside a run carries ``session`` (the gateway session id) and ``run``, and
inside an action ``action`` (its number in the plan), whoever logs it: the runner sets them
in the run task's context (``log_context``), so the planner's and the gateway client's
lines carry them too. A line may add its own fields with ``extra={"fields": {...}}``.

Third-party loggers (alembic, APScheduler, uvicorn, the HTTP clients, the openai SDK) stay at
WARNING unless ``service.log_level`` is DEBUG. The wire-level ones (SQLAlchemy's statement
echo, the database drivers, httpcore's connection steps) stay at WARNING even then: they
would drown a run's story in thousands of lines.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
import traceback
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from heatup_daemon.journal import JournalSender, is_journal_stream, record_fields
from heatup_daemon.redact import redact

CONTEXT_FIELDS: Final = ("session", "run", "action")
QUIET: Final = (
    "alembic",
    "apscheduler",
    "aiohttp",
    "httpx2",
    "httpx",
    "openai",
    "uvicorn",
    "uvicorn.access",
    "uvicorn.error",
    "asyncio",
)
SILENT: Final = ("sqlalchemy", "aiosqlite", "asyncpg", "httpcore2", "httpcore")

_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar(
    "heatup_log_context",
    default={},  # noqa: B039 - never mutated: each scope sets a new dict
)


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every line logged in this context (this task and what it awaits)."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def entry_of(record: logging.LogRecord) -> dict[str, object]:
    """The record's keys and values: its JSON line, and the journal's fields."""
    entry: dict[str, object] = {
        "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "message": record.getMessage(),
    }
    entry.update(_context.get())
    for field in CONTEXT_FIELDS:
        value = getattr(record, field, None)
        if value is not None:
            entry[field] = value
    extra = getattr(record, "fields", None)
    if isinstance(extra, dict):
        entry.update(extra)
    if record.exc_info and record.exc_info[0] is not None:
        entry["error"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
        entry["traceback"] = "".join(traceback.format_exception(*record.exc_info))
    return entry


class JsonFormatter(logging.Formatter):
    """One JSON object per line; known secrets and credential-shaped text are masked in the
    whole line, whoever logged it."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = tuple(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return redact(json.dumps(entry_of(record), default=str), self._secrets)


class JournalHandler(logging.Handler):
    """Each record to the systemd journal as fields (``journal``), masked as the JSON line
    is; a record the journal cannot take goes to stdout as its JSON line."""

    def __init__(self, secrets: Iterable[str] = (), sender: JournalSender | None = None) -> None:
        super().__init__()
        self._secrets = tuple(secrets)
        self._sender = sender or JournalSender()
        self._json = JsonFormatter(self._secrets)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            try:
                self._sender.send(record_fields(entry_of(record), record, self._secrets))
            except OSError:
                sys.stdout.write(self._json.format(record) + "\n")
                sys.stdout.flush()
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self._sender.close()
        super().close()


class TextFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S")
        self._secrets = tuple(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self._secrets)


def configure_logging(
    level: str,
    *,
    json_lines: bool = True,
    secrets: Iterable[str] = (),
    environ: Mapping[str, str] = os.environ,
) -> None:
    """JSON lines on stdout, or the journal's fields when stdout or stderr is the journal's
    stream (``json_lines``); the short text form otherwise."""
    handler: logging.Handler
    if json_lines and is_journal_stream(environ):
        handler = JournalHandler(secrets)
    else:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter(secrets) if json_lines else TextFormatter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for name in QUIET:
        logging.getLogger(name).setLevel(quiet)
    for name in SILENT:
        logging.getLogger(name).setLevel(logging.WARNING)
