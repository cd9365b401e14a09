"""The closed sets of heatup, each defined once.

The database's CHECK constraints (``db.models``), the metrics' label values (``metrics``)
and the words the log uses are derived from these; nothing else spells them out
(``tests/unit/test_enums.py`` holds the constraints and the labels to them).
"""

from __future__ import annotations

import re
from enum import IntEnum, StrEnum
from typing import Final


class SessionState(StrEnum):
    """Whether heatup may act for a session (``needs_attention``: only an admin can bring it
    back, after its account was lost or frozen)."""

    ACTIVE = "active"
    NEEDS_ATTENTION = "needs_attention"


class Standing(StrEnum):
    """How heatup sees a ``sessions`` row, from its stored columns, in this order: flagged
    ``invalid``; else ``disabled``; else ``needs_attention``; else ``active`` (it runs on its
    schedule). ``session.standing`` and its SQL twin ``db.sessions.standing_sql`` decide it;
    the label of ``heatup_sessions``."""

    ACTIVE = "active"
    NEEDS_ATTENTION = "needs_attention"
    DISABLED = "disabled"
    INVALID = "invalid"


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


class ActionCode(StrEnum):
    """The error codes heatup itself gives an action (the others are the gateway's):
    ``in_flight`` its row before the gateway call (what a crash leaves), ``interrupted`` a
    run cancelled during it, ``invalid`` a plan value the gateway client refused."""

    IN_FLIGHT = "in_flight"
    INTERRUPTED = "interrupted"
    INVALID = "invalid"


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


class SkipCause(StrEnum):
    """Why a slot was recorded ``skipped`` (the label of ``heatup_slots_skipped_total``)."""

    LATE = "late"  # missed past the misfire grace: heatup was down or behind
    IN_FLIGHT = "in_flight"  # a run of the session was still in flight
    COOLDOWN = "cooldown"  # the session was cooling down after a flood wait
    COALESCED = "coalesced"  # passed while dispatch was behind, folded into one run


class Refusal(StrEnum):
    """Why a session may not run now (``session.admit``; ``removed``: its row is gone)."""

    INVALID = "invalid"
    DISABLED = "disabled"
    NEEDS_ATTENTION = "needs_attention"
    COOLING_DOWN = "cooling_down"
    REMOVED = "removed"


class JoinRefusal(StrEnum):
    """Why the join ledger refuses a planned join: the account's ramp, the channel's pace
    (the label of ``heatup_joins_dropped_total``), a channel no longer in the pool, or a
    session an admin removed while its run was in flight (its ramp is no longer known)."""

    RAMP = "ramp"
    CHANNEL_PACE = "channel_pace"
    GONE = "gone"
    SESSION_REMOVED = "session_removed"

    @property
    def looks_after_accounts(self) -> bool:
        """A join dropped to look after accounts (counted), not for a row gone."""
        return self not in (JoinRefusal.GONE, JoinRefusal.SESSION_REMOVED)


class Job(StrEnum):
    """The scheduler's jobs (the label of ``heatup_job_failures_total``)."""

    DISPATCH = "dispatch"
    RECONCILE = "reconcile"
    REAP = "reap"
    REFRESH = "refresh"
    RETENTION = "retention"
    ROLL_UP = "roll_up"


class LLMOutcome(StrEnum):
    """How an LLM planning call ended (the label of ``heatup_llm_requests_total``)."""

    OK = "ok"
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    HTTP_ERROR = "http_error"
    CONNECTION_ERROR = "connection_error"
    UNUSABLE_ANSWER = "unusable_answer"
    ERROR = "error"


class Clearance(StrEnum):
    """Whether a run may make the gateway call it is about to make (``RunRecorder.start_call``):
    ``cleared``; ``reaped``, the run no longer runs (the reaper ended it: it stops);
    ``lease_short``, its node's lease would not outlast the call (renew it and ask again)."""

    CLEARED = "cleared"
    REAPED = "reaped"
    LEASE_SHORT = "lease_short"


class Surface(StrEnum):
    """Where an admin's change was made (the audit's ``via``)."""

    CLI = "cli"
    API = "api"
    CONSOLE = "console"


class Actor(StrEnum):
    """Who made an admin's change (the audit's ``actor``): whoever runs the CLI on the host,
    the holder of ``api.token``, or, with no token configured, anyone on loopback."""

    CLI = "cli"
    TOKEN = "api.token"
    NO_TOKEN = "no token"


class Change(StrEnum):
    """What an admin's change did (the audit's ``action``)."""

    REGISTER = "register"
    EDIT = "edit"
    ENABLE = "enable"
    DISABLE = "disable"
    REMOVE = "remove"
    ADD_CHANNEL = "add channel"
    ENABLE_CHANNEL = "enable channel"
    DISABLE_CHANNEL = "disable channel"


class SessionSort(StrEnum):
    """The console's session list orders, each a column of the list."""

    GATEWAY_ID = "id"
    STANDING = "standing"
    SCHEDULE = "schedule"
    LAST_RUN = "last_run"
    NEXT_RUN = "next_run"
    PROBLEM = "problem"


class SessionAction(StrEnum):
    """What the console's buttons and bulk form do to a session."""

    ENABLE = "enable"
    DISABLE = "disable"
    REMOVE = "remove"
    RUN = "run"


_FIRST_BRACE: Final = re.compile(r"\s*\{")


class Format(StrEnum):
    """The files ``sessions import`` reads and ``sessions export`` writes."""

    CSV = "csv"
    JSONL = "jsonl"

    @classmethod
    def of(cls, name: str, text: str) -> Format:
        """The format of a file named ``name`` holding ``text``: by its suffix, else by its
        first character (``{`` for JSON Lines)."""
        lowered = name.lower()
        if lowered.endswith(".csv"):
            return cls.CSV
        if lowered.endswith((".jsonl", ".ndjson", ".json")):
            return cls.JSONL
        return cls.JSONL if _FIRST_BRACE.match(text) else cls.CSV  # no copy of the text


def sql_in(column: str, values: type[StrEnum]) -> str:
    """``column IN ('a', 'b')`` over every member of ``values``, for a CHECK constraint."""
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


class ExitCode(IntEnum):
    """How the ``heatup`` command exits (systemd and scripts read it)."""

    OK = 0
    FAILURE = 1  # the daemon or a command failed; the error is on stderr or in the log
    USAGE = 2  # the command line is wrong
