"""The repository: every database operation heatup performs, and the only code that opens a
database session. Its parts live beside it: ``registry`` (sessions, channels), ``runs``
(runs, actions, session state heatup owns) and ``scheduling`` (reconcile, claims, reaping)."""

from __future__ import annotations

from heatup_daemon.db.registry import ChannelView, RegistryStore, SessionView
from heatup_daemon.db.runs import ActionRecord, RunStore, RunView
from heatup_daemon.db.scheduling import SchedulingStore

__all__ = ["ActionRecord", "ChannelView", "Repository", "RunView", "SessionView"]


class Repository(RegistryStore, RunStore, SchedulingStore):
    """All of heatup's database operations over one engine. Construct once per process."""
