"""What one simulated run leaves: its trace (every port call, gateway request, event and
violation, in order, with the virtual time), a digest of it, and the log lines heatup wrote.

Two runs of one seed give the same trace, line for line: the digest is how a test and a
replay tell. Log records are captured by a handler on the root logger; their text is
formatted only for the trace's lines at WARNING and above.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

# Log lines that are heatup's expected words for the faults the simulation injects, as
# (logger, message template). Every other ERROR is a violation.
EXPECTED_ERRORS: Final = frozenset(
    {
        # A database outage seen by a scheduler job (the partitions, the lost answers).
        ("heatup_daemon.scheduling.jobs", "%s; dispatch pauses and resumes when it answers again"),
    }
)


@dataclass(frozen=True, slots=True)
class Violation:
    """An invariant found broken: which, when (virtual seconds), and what it saw."""

    invariant: str
    at_s: float
    detail: str

    def __str__(self) -> str:
        return f"{self.invariant} at {self.at_s:.3f} s: {self.detail}"


class Trace:
    """The lines of one simulated run, and what its invariants found. Lines are kept as
    their fields and written out (for the digest, or to be read) only when asked."""

    def __init__(self, time: Callable[[], float]) -> None:
        self._time = time
        self._entries: list[tuple[float, tuple[object, ...]]] = []
        self.violations: list[Violation] = []
        self._seen: set[tuple[str, str]] = set()

    @property
    def count(self) -> int:
        return len(self._entries)

    def add(self, *fields: object) -> None:
        """One line: the virtual time, then ``fields``."""
        self._entries.append((self._time(), fields))

    def violated(self, invariant: str, detail: str, key: str | None = None) -> None:
        """Record a violation: each distinct one once (or once per ``key``)."""
        seen = (invariant, detail if key is None else key)
        if seen in self._seen:
            return
        self._seen.add(seen)
        violation = Violation(invariant, self._time(), detail)
        self.violations.append(violation)
        self.add("VIOLATION", invariant, detail)

    def lines(self) -> Iterator[str]:
        for at, fields in self._entries:
            yield f"{at:.6f} " + " ".join(map(str, fields))

    def digest(self) -> str:
        digest = hashlib.sha256()
        for line in self.lines():
            digest.update(line.encode())
            digest.update(b"\n")
        return digest.hexdigest()


class LogCapture(logging.Handler):
    """Every record at WARNING and above (and every record while tracing) into the trace;
    an ERROR heatup was not expected to log is a violation."""

    def __init__(self, trace: Trace, owner_of: Callable[[], str], verbose: bool) -> None:
        super().__init__(logging.DEBUG if verbose else logging.WARNING)
        self._trace = trace
        self._owner_of = owner_of
        self._verbose = verbose
        self.errors = 0

    def emit(self, record: logging.LogRecord) -> None:
        owner = self._owner_of()
        if record.levelno >= logging.ERROR:
            expected = (record.name, record.msg) in EXPECTED_ERRORS
            text = _message(record)
            self._trace.add("LOG", owner, record.levelname, record.name, text)
            if not expected and not owner.endswith("(dead)"):
                self.errors += 1
                self._trace.violated("no_unexpected_errors", f"{owner} {record.name}: {text}")
        elif record.levelno >= logging.WARNING:
            self._trace.add("LOG", owner, record.levelname, record.name, record.msg)
        elif self._verbose:
            self._trace.add("LOG", owner, record.levelname, record.name, _message(record))


def _message(record: logging.LogRecord) -> str:
    try:
        text = record.getMessage()
    except Exception as exc:  # a bad format is a line worth seeing, not a crash of the sim
        text = f"{record.msg!r} (unformattable: {exc!r})"
    if record.exc_info and record.exc_info[1] is not None:
        text += f" [{type(record.exc_info[1]).__name__}: {record.exc_info[1]}]"
    return text


class captured_logs:
    """Route every log record to ``handler`` (and nowhere else) while the block runs."""

    def __init__(self, handler: logging.Handler, level: int) -> None:
        self._handler = handler
        self._level = level
        self._saved: tuple[list[logging.Handler], int, dict[str, int]] | None = None

    def __enter__(self) -> None:
        root = logging.getLogger()
        quiet = {name: logging.getLogger(name).level for name in ("apscheduler", "asyncio")}
        self._saved = (root.handlers[:], root.level, quiet)
        root.handlers[:] = [self._handler]
        root.setLevel(self._level)
        for name in quiet:
            logging.getLogger(name).setLevel(max(self._level, logging.WARNING))

    def __exit__(self, *exc: object) -> None:
        assert self._saved is not None
        handlers, level, quiet = self._saved
        root = logging.getLogger()
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, old in quiet.items():
            logging.getLogger(name).setLevel(old)
