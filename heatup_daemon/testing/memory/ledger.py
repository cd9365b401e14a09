"""The join ledger: reservations and their ends (``db/ledger.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from heatup_daemon.enums import JoinRefusal, JoinStatus, Outcome
from heatup_daemon.ramp import PACE_WINDOW, RAMP_WINDOW
from heatup_daemon.records import ActionRecord, JoinLimits, Run
from heatup_daemon.testing.memory.tables import MemoryTables
from heatup_daemon.warmth import reserve_places


class MemoryLedger(MemoryTables):
    """The join ledger: reservations and their ends (``db/ledger.py``)."""

    async def reserve_joins(
        self, run: Run, channels: Sequence[str], limits: JoinLimits, now: datetime
    ) -> dict[str, JoinRefusal | None]:
        self._check()
        if run.session.id not in self.sessions:  # removed while its run was in flight
            return dict.fromkeys(channels, JoinRefusal.SESSION_REMOVED)
        # This run's own places are left out of the counts and kept as they are (a retry).
        ids = {c: cid for c in channels if (cid := self._channel_id(c)) is not None}
        taken = self._held(now - RAMP_WINDOW, other_than=run.id, session_id=run.session.id)
        counts = {
            cid: self._held(now - PACE_WINDOW, other_than=run.id, channel_id=cid)
            for cid in ids.values()
        }
        verdicts, granted = reserve_places(channels, ids, taken, counts, limits)
        held = {join["channel_id"] for join in self.ledger if join["run_id"] == run.id}
        self.ledger.extend(
            {
                "channel_id": channel_id,
                "session_id": run.session.id,
                "run_id": run.id,
                "reserved_at": now,
                "status": JoinStatus.RESERVED,
            }
            for channel_id in granted
            if channel_id not in held
        )
        return verdicts

    async def record_join(self, run: Run, record: ActionRecord) -> None:
        self._check()
        self._write_action(run.id, record)
        assert record.channel is not None
        channel_id = self._channel_id(record.channel)
        if channel_id is None:
            return
        kept = record.outcome.may_have_happened
        for join in self.ledger:
            if join["run_id"] == run.id and join["channel_id"] == channel_id:
                if join["status"] is JoinStatus.RESERVED:
                    join["status"] = JoinStatus.JOINED if kept else JoinStatus.RELEASED
        if record.outcome is Outcome.OK:
            self.joined[run.session.id].setdefault(channel_id, record.finished_at)
