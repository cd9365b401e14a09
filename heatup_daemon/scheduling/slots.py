"""What becomes of a session's slots: the scheduler's decisions, pure.

Stores call these on rows they hold locked and write the outcome in the same transaction
(``stores.SlotPolicy``). Nothing here reads the clock or does I/O; the moment and the random
number generator are arguments.

Every slot leaves exactly one ``warmup_runs`` row, and a session's scheduled rows form a
chain: each row's ``scheduled_for`` is the previous row's ``next_slot_at``. A due slot
becomes:

- a **run** (``running``), unless one of the reasons below holds; slots that came due while
  dispatch was behind (their nominal time has passed too) coalesce into one ``skipped`` row
  after it;
- a **skipped** row standing for it and every later slot that has passed: when it is late
  by more than ``scheduler.misfire_grace_s`` (heatup was down, or could not keep up),
  or when a run of the session is still in flight;
- a **skipped** row standing for every slot up to the end of a cooldown (a flood wait).

A row heatup cannot use is flagged (``invalid_reason``) and gets no slot; every other row
goes on. No exception leaves a decision: a failure is a flag on that one row.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final

from heatup_daemon.enums import Refusal, RunStatus, SessionState, SkipCause
from heatup_daemon.errors import InvalidState, InvalidValue, SessionNotRunnable
from heatup_daemon.records import Decision, SlotRow
from heatup_daemon.session import Session, SessionRecord, admit, key_fields, validate_record
from heatup_daemon.timing.schedule import NominalTimes, jittered, nominal_times, slot_at_or_after

log = logging.getLogger(__name__)

SCHEDULE_FIELDS: Final = ("schedule", "jitter_seconds", "timezone")
# Overdue by less than this when dispatch resumes, slots are claimed as usual.
CATCH_UP_FROM_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class CatchUp:
    """Slots that fell due while dispatch was away (heatup was down, or the database out),
    spread out in due order. Claims take only the rows due up to ``cutoff(now)``, which
    sweeps from ``since`` (the oldest overdue due time, at most the misfire grace back) to
    real time at twice its pace: the overdue runs start over a window as long as they were
    overdue, the slots that come due meanwhile queue behind them, the start rate stays
    within twice the steady one, and no slot waits longer than it was already overdue (so
    none becomes late by the spreading)."""

    since: datetime
    began: datetime

    @classmethod
    def of(cls, oldest_due: datetime | None, now: datetime, grace_s: float) -> CatchUp | None:
        """The catch-up for a dispatch resuming at ``now``; ``None`` if little is overdue."""
        if oldest_due is None:
            return None
        since = max(oldest_due, now - timedelta(seconds=grace_s))
        if (now - since).total_seconds() < CATCH_UP_FROM_S:
            return None
        return cls(since, now)

    @property
    def window(self) -> timedelta:
        return self.began - self.since

    def cutoff(self, now: datetime) -> datetime | None:
        """The latest due time claimable at ``now``; ``None`` once the sweep is over."""
        swept = self.since + 2 * (now - self.began)
        return None if swept >= now else swept

    def claimable_at(self, due: datetime) -> datetime:
        """When a row due at ``due`` comes within the cutoff."""
        return self.began + max(due - self.since, timedelta(0)) / 2


class Slots:
    """The ``SlotPolicy`` of the scheduler."""

    def __init__(self, misfire_grace_s: float, rng: random.Random) -> None:
        self._grace_s = misfire_grace_s
        self._rng = rng

    # --- reconcile ------------------------------------------------------------------------

    def reconcile(self, record: SessionRecord, now: datetime) -> Decision:
        try:
            return self._reconcile(record, now)
        except Exception as exc:  # a flag on this row, never a stop for the others
            return _flagged(record, _unexpected(exc), applied_key=None)

    def _reconcile(self, record: SessionRecord, now: datetime) -> Decision:
        try:
            session = validate_record(record, now)
        except InvalidState as exc:
            return _flagged(record, str(exc), applied_key=None)
        except InvalidValue as exc:
            return _flagged(record, str(exc), applied_key=record.key)
        nominal = _time(record.next_nominal_at)
        if not session.enabled or session.state is not SessionState.ACTIVE:
            return Decision(record, nominal, None, None, record.key)
        due = _time(record.next_run_at)
        keep_grid = nominal is not None and not schedule_changed(record)
        if keep_grid and due is not None:
            # Only a label or an account date changed: the pending slot stays as it is.
            return Decision(record, nominal, due, None, record.key)
        anchor = nominal if keep_grid and nominal is not None else now
        slot = slot_at_or_after(self._times(session, anchor), now, session.jitter_s, self._rng)
        return Decision(record, slot.nominal, slot.due, None, record.key)

    # --- claim ------------------------------------------------------------------------------

    def claim(self, record: SessionRecord, running_run_id: int | None, now: datetime) -> Decision:
        try:
            return self._claim(record, running_run_id, now)
        except Exception as exc:
            return _flagged(record, _unexpected(exc), applied_key=None)

    def _claim(self, record: SessionRecord, running_run_id: int | None, now: datetime) -> Decision:
        if record.edited or record.invalid_reason:
            # Edited since the last reconcile: decide it as reconcile would, now.
            decided = self._reconcile(record, now)
            if decided.next_run_at is None or decided.next_run_at > now:
                return decided
            record = _as_applied(record, decided)
        nominal, due = _time(record.next_nominal_at), _time(record.next_run_at)
        assert nominal is not None and due is not None  # a due row has both (checked above)
        try:
            session = admit(record, now)
        except SessionNotRunnable as refused:
            if refused.refusal is Refusal.COOLING_DOWN:
                return self._cooling_down(record, validate_record(record, now), nominal, due, now)
            # Invalid, disabled or set aside: no slot (reconcile brings it back when fixed).
            return replace(self._reconcile(record, now), next_run_at=None)
        times = self._times(session, nominal)
        following = times.after(nominal)
        upcoming = following if following > now else times.after(now)
        late_s = (now - due).total_seconds()
        skip: tuple[str, SkipCause] | None = None
        if late_s > self._grace_s:
            text = f"missed by {late_s:.0f} s: heatup was not running or could not keep up"
            skip = (text, SkipCause.LATE)
        elif running_run_id is not None:
            skip = (f"run {running_run_id} of the session was still in flight", SkipCause.IN_FLIGHT)
        if skip is not None:
            skipped = SlotRow(RunStatus.SKIPPED, nominal, due, upcoming, *skip)
            return self._next(record, session, times, upcoming, (skipped,))
        rows = [SlotRow(RunStatus.RUNNING, nominal, due, following)]
        if following < upcoming:
            reason = f"coalesced into the run of {nominal:%H:%M:%S}Z: dispatch fell behind"
            rows.append(
                SlotRow(
                    RunStatus.SKIPPED, following, following, upcoming, reason, SkipCause.COALESCED
                )
            )
        return self._next(record, session, times, upcoming, tuple(rows), session)

    def _cooling_down(
        self,
        record: SessionRecord,
        session: Session,
        nominal: datetime,
        due: datetime,
        now: datetime,
    ) -> Decision:
        until = session.cooldown_until
        assert until is not None
        times = self._times(session, nominal)
        upcoming = times.after(max(until, now, nominal))
        reason = f"cooling down after a flood wait until {until:%Y-%m-%d %H:%M:%S}Z"
        rows = (SlotRow(RunStatus.SKIPPED, nominal, due, upcoming, reason, SkipCause.COOLDOWN),)
        return self._next(record, session, times, upcoming, rows)

    def _next(
        self,
        record: SessionRecord,
        session: Session,
        times: NominalTimes,
        upcoming: datetime,
        rows: tuple[SlotRow, ...],
        to_run: Session | None = None,
    ) -> Decision:
        """The decision to move the row to its next slot after ``upcoming``, writing
        ``rows``; ``to_run``: the session, when one of them is a run that starts."""
        slot = jittered(times, upcoming, session.jitter_s, self._rng)
        return Decision(record, slot.nominal, slot.due, None, record.key, rows, to_run)

    @staticmethod
    def _times(session: Session, anchor: datetime) -> NominalTimes:
        return nominal_times(session.schedule, session.timezone, anchor)


def schedule_changed(record: SessionRecord) -> bool:
    """Whether the fields that place the slots changed since the row was last applied."""
    old, new = key_fields(record.applied_key), key_fields(record.key)
    return any(old.get(name) != new.get(name) for name in SCHEDULE_FIELDS)


def _time(value: object) -> datetime | None:
    return value if isinstance(value, datetime) else None


def _flagged(record: SessionRecord, reason: str, applied_key: str | None) -> Decision:
    return Decision(record, _time(record.next_nominal_at), None, reason, applied_key)


def _as_applied(record: SessionRecord, decided: Decision) -> SessionRecord:
    return replace(
        record,
        next_nominal_at=decided.next_nominal_at,
        next_run_at=decided.next_run_at,
        invalid_reason=None,
        applied_key=decided.applied_key,
    )


def _unexpected(exc: Exception) -> str:
    # The scheduler logs the flag once; the traceback is for whoever debugs it.
    log.debug("cannot decide the next slot of a session row", exc_info=True)
    return f"heatup cannot compute this row's next slot: {type(exc).__name__}: {exc}"
