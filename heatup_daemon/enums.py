"""The closed sets of heatup, each defined once.

The database's CHECK constraints (``db.models``) and the metrics' label values (``metrics``)
are derived from these; nothing else spells them out.
"""

from __future__ import annotations

from enum import StrEnum


class SessionState(StrEnum):
    """Whether heatup may act for a session (``needs_attention``: only an admin can bring it
    back, after its account was lost or frozen)."""

    ACTIVE = "active"
    NEEDS_ATTENTION = "needs_attention"


class Trigger(StrEnum):
    """Who started a run."""

    SCHEDULE = "schedule"
    API = "api"
    CLI = "cli"


class RunStatus(StrEnum):
    """A run's status. ``running`` is the only one that is not final."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    SKIPPED = "skipped"


class PlanSource(StrEnum):
    LLM = "llm"
    FALLBACK = "fallback"


class ActionKind(StrEnum):
    """The whole action vocabulary (DESIGN section 2): nothing else is ever planned."""

    JOIN_CHANNEL = "join_channel"
    READ_MESSAGES = "read_messages"
    BROWSE_DIALOGS = "browse_dialogs"
    IDLE = "idle"

    @property
    def names_channel(self) -> bool:
        return self in (ActionKind.JOIN_CHANNEL, ActionKind.READ_MESSAGES)

    @property
    def lasts(self) -> bool:
        """The action stays for its ``duration_seconds``."""
        return self in (ActionKind.READ_MESSAGES, ActionKind.IDLE)


class Outcome(StrEnum):
    """How an executed action ended. ``unknown``: its call was made and its answer never
    came (a join a read-only call could not confirm, or a call cut by a crash or a stop)."""

    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"
    UNKNOWN = "unknown"

    @property
    def may_have_happened(self) -> bool:
        """The action may have taken effect: a join's place in the ledger is kept (it counts
        for the account's ramp and the channel's pace)."""
        return self in (Outcome.OK, Outcome.UNKNOWN)


class JoinStatus(StrEnum):
    """A row of the join ledger: ``reserved`` when a plan took the place, ``joined`` once the
    join happened or may have (``Outcome.may_have_happened``), ``released`` when it did not
    (or the run ended before it)."""

    RESERVED = "reserved"
    JOINED = "joined"
    RELEASED = "released"


class Clearance(StrEnum):
    """Whether a run may make the gateway call it is about to make (``RunRecorder.start_call``):
    ``cleared``; ``reaped``, the run no longer runs (the reaper ended it: it stops);
    ``lease_short``, its node's lease would not outlast the call (renew it and ask again)."""

    CLEARED = "cleared"
    REAPED = "reaped"
    LEASE_SHORT = "lease_short"


def sql_in(column: str, values: type[StrEnum]) -> str:
    """``column IN ('a', 'b')`` over every member of ``values``, for a CHECK constraint."""
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"
