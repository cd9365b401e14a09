"""The fatal rule: a failure of heatup's own, as opposed to a dependency being away, that
lasts ``FATAL_AFTER_S`` stops the daemon with a non-zero exit, so that systemd restarts a
broken process instead of leaving it up and useless. A database outage never counts (it is
waited out); a failing scheduler job, a run's write the database refuses, a task that died,
do."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from heatup_daemon.timing.clock import Clock

FATAL_AFTER_S: Final = 60.0


class FatalRule:
    """Tracks, per kind of work (``what``), since when it has been failing."""

    def __init__(self, clock: Clock, on_fatal: Callable[[BaseException], None]) -> None:
        self._clock = clock
        self._on_fatal = on_fatal
        self._failing_since: dict[str, float] = {}

    def failed(self, what: str, error: BaseException) -> None:
        """``what`` failed again; once it has failed for ``FATAL_AFTER_S``, the daemon stops."""
        now = self._clock.monotonic()
        since = self._failing_since.setdefault(what, now)
        if now - since >= FATAL_AFTER_S:
            self._on_fatal(error)

    def recovered(self, what: str) -> None:
        """``what`` succeeded: its failures start counting afresh."""
        self._failing_since.pop(what, None)
