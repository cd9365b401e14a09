"""The repository: every database operation heatup performs, and the only code that opens a
database session. Its parts live beside it: ``registry`` (sessions, channels) and ``runs``
(runs, actions, session state heatup owns)."""

from __future__ import annotations

from heatup_daemon.db.registry import ChannelView, RegistryStore, SessionView
from heatup_daemon.db.runs import ActionView, RunStore, RunView

__all__ = ["ActionView", "ChannelView", "Repository", "RunView", "SessionView"]


class Repository(RegistryStore, RunStore):
    """All of heatup's database operations over one engine. Construct once per process."""
