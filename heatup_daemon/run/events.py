"""What happens in a run, told once: the ``RunObserver`` seam.

The runner and the executor report each event of a run here, whoever started it (schedule,
API or CLI). Listeners: the metrics (``metrics.Metrics``), the run's story in the log
(``RunLog``), and the live output of ``heatup warmup`` and the demo. ``Observers`` fans one
event out to several; ``Listener`` is a base that hears nothing, for an observer that only
wants some events.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from heatup_daemon.enums import Outcome, RunStatus
from heatup_daemon.planner.model import Plan
from heatup_daemon.records import ActionRecord, Run
from heatup_daemon.validation import handle

log = logging.getLogger("heatup_daemon.runs")


@dataclass(frozen=True, slots=True)
class RunEnd:
    """How a run ended: its final status (the reaper's, if it ended the run first), the error
    that ended it, the actions carried out, and how long it took."""

    status: RunStatus
    error: str | None
    actions: Sequence[ActionRecord]
    seconds: float


class RunObserver(Protocol):
    """Hears of a run's events as they happen. Calls are synchronous and must not fail."""

    def run_started(self, run: Run, plan: Plan) -> None: ...

    def action_ended(self, run: Run, record: ActionRecord) -> None: ...

    def run_ended(self, run: Run, end: RunEnd) -> None: ...

    def cooldown_set(self, run: Run, until: datetime, wait_s: int) -> None: ...

    def needs_attention(self, run: Run, reason: str) -> None: ...

    def channel_flagged(self, run: Run, channel: str, reason: str) -> None: ...


class Observers:
    """A ``RunObserver`` that passes each event to several."""

    def __init__(self, *observers: RunObserver) -> None:
        self._observers = observers

    def run_started(self, run: Run, plan: Plan) -> None:
        for observer in self._observers:
            observer.run_started(run, plan)

    def action_ended(self, run: Run, record: ActionRecord) -> None:
        for observer in self._observers:
            observer.action_ended(run, record)

    def run_ended(self, run: Run, end: RunEnd) -> None:
        for observer in self._observers:
            observer.run_ended(run, end)

    def cooldown_set(self, run: Run, until: datetime, wait_s: int) -> None:
        for observer in self._observers:
            observer.cooldown_set(run, until, wait_s)

    def needs_attention(self, run: Run, reason: str) -> None:
        for observer in self._observers:
            observer.needs_attention(run, reason)

    def channel_flagged(self, run: Run, channel: str, reason: str) -> None:
        for observer in self._observers:
            observer.channel_flagged(run, channel, reason)


class Listener:
    """A ``RunObserver`` that hears nothing: a base for an observer that wants some events."""

    def run_started(self, run: Run, plan: Plan) -> None:
        pass

    def action_ended(self, run: Run, record: ActionRecord) -> None:
        pass

    def run_ended(self, run: Run, end: RunEnd) -> None:
        pass

    def cooldown_set(self, run: Run, until: datetime, wait_s: int) -> None:
        pass

    def needs_attention(self, run: Run, reason: str) -> None:
        pass

    def channel_flagged(self, run: Run, channel: str, reason: str) -> None:
        pass


class RunLog:
    """A run's story in the log. The lines carry ``session`` and ``run`` (and ``action``)
    from the run's log context; each adds its own fields for machines to read."""

    def run_started(self, run: Run, plan: Plan) -> None:
        fields = {
            "trigger": run.trigger,
            "plan_source": plan.source,
            "actions": len(plan.actions),
        }
        if plan.fallback_reason:
            fields["fallback_reason"] = plan.fallback_reason
        log.info(
            "run %d started (%s): %d actions planned by %s",
            run.id,
            run.trigger,
            len(plan.actions),
            plan.source,
            extra={"fields": fields},
        )

    def action_ended(self, run: Run, record: ActionRecord) -> None:
        record = record.shown()
        fields = {
            "kind": record.kind,
            "channel": record.channel,
            "outcome": record.outcome,
            "code": record.error_code,
            "seconds": record.actual_duration_s,
        }
        level = logging.DEBUG if record.outcome is Outcome.OK else logging.INFO
        where = f" {record.channel}" if record.channel else ""
        code = f" {record.error_code}" if record.error_code else ""
        log.log(
            level,
            "action %d %s%s: %s%s",
            record.seq,
            record.kind,
            where,
            record.outcome,
            code,
            extra={"action": record.seq, "fields": fields},
        )

    def run_ended(self, run: Run, end: RunEnd) -> None:
        counts = {outcome.value: 0 for outcome in Outcome}
        for action in end.actions:
            counts[action.outcome] += 1
        good = end.status in (RunStatus.SUCCEEDED, RunStatus.PARTIAL)
        log.log(
            logging.INFO if good else logging.WARNING,
            "run %d %s after %.1f s: %d actions (%d ok, %d failed)%s",
            run.id,
            end.status,
            end.seconds,
            len(end.actions),
            counts[Outcome.OK],
            counts[Outcome.FAILED],
            f": {end.error}" if end.error else "",
            extra={
                "fields": {
                    "status": end.status,
                    "outcomes": counts,
                    "seconds": round(end.seconds, 3),
                }
            },
        )

    def cooldown_set(self, run: Run, until: datetime, wait_s: int) -> None:
        log.warning(
            "flood wait of %d s: the session cools down until %sZ",
            wait_s,
            f"{until:%Y-%m-%d %H:%M:%S}",
            extra={"fields": {"flood_wait_s": wait_s, "cooldown_until": until}},
        )

    def needs_attention(self, run: Run, reason: str) -> None:
        log.warning(
            "the session needs attention: %s", reason, extra={"fields": {"state_reason": reason}}
        )

    def channel_flagged(self, run: Run, channel: str, reason: str) -> None:
        log.warning(
            "channel %s is flagged in the pool: %s",
            handle(channel),
            reason,
            extra={"fields": {"channel": handle(channel), "flagged_reason": reason}},
        )
