"""heatup's own exceptions, named for what happened.

Adapters (configuration, database, gateway, LLM) translate their libraries' exceptions into
these, so callers decide on behaviour without knowing which library is underneath.
"""

from __future__ import annotations

from heatup_daemon.enums import LLMOutcome, Refusal


class HeatupError(Exception):
    """Base of every error heatup raises on purpose."""


class ConfigError(HeatupError):
    """The configuration cannot be used; the message names the key, the value and the rule."""


class InvalidValue(HeatupError, ValueError):
    """A value given by an admin (CLI argument or table row) breaks a rule.

    ``str(error)`` is one line meant for the admin: it says what is wrong and what is allowed.
    """


class InvalidState(InvalidValue):
    """A value in one of heatup's own columns of a row is unusable (written by hand):
    heatup looks at the row again on every reconcile pass until it is fixed."""


class DatabaseUnavailable(HeatupError):
    """The database cannot be reached or used for now (down, restarting, locked, out of
    connections). Transient: heatup waits and tries again; it never exits for it."""


class ImportCut(DatabaseUnavailable):
    """An import written in chunks lost the database part way: the message says how many
    sessions were registered and how to register the rest."""


class DatabaseRefused(HeatupError):
    """The database refused a statement: a constraint, a missing column, too many bound
    values, a disk error. A defect (of heatup, of a hand edit, of the database), not an
    outage: never retried, and one that keeps happening stops the daemon."""


class Stopping(HeatupError):
    """heatup is stopping: it starts no new run."""


class SchemaNotAtHead(HeatupError):
    """The database schema is not at the newest migration."""


class NotFound(HeatupError):
    """A row the caller named does not exist."""


class AlreadyExists(HeatupError):
    """A row with the same unique key exists already."""


class BadRevision(HeatupError):
    """A schema revision named by an admin does not exist or cannot be reached."""


# --- The session gateway ---------------------------------------------------------------
# One class per row of GATEWAY.md's outcome table. ``code`` is the short, secret-free code
# recorded in warmup_actions.error_code; ``str(error)`` is a short, secret-free excerpt.


class GatewayError(HeatupError):
    """A gateway call did not succeed. Subclasses say how."""

    code: str = "GATEWAY_ERROR"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class FloodWait(GatewayError):
    """Telegram asks for a pause: no call for this session for ``seconds``."""

    code = "FLOOD_WAIT"

    def __init__(self, seconds: int, message: str) -> None:
        super().__init__(message)
        self.seconds = seconds


class SessionGone(GatewayError):
    """The session's account is deleted, revoked or deactivated; ``reason`` says which."""

    code = "SESSION_GONE"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class SessionFrozen(SessionGone):
    """The session's account is frozen; handled like a lost session, reason ``frozen``."""

    code = "SESSION_FROZEN"

    def __init__(self, message: str) -> None:
        super().__init__("frozen", message)


class ChannelUnavailable(GatewayError):
    """The channel cannot be used (``code``: USERNAME_NOT_OCCUPIED, CHANNEL_PRIVATE, ...)."""


class TooManyChannels(GatewayError):
    """The session has joined as many channels as Telegram allows."""

    code = "CHANNELS_TOO_MUCH"


class GatewayUnavailable(GatewayError):
    """A transient failure (5xx, 429, timeout, reset, non-JSON body) outlived the retries."""

    code = "transient"


class GatewayAuthFailed(GatewayError):
    """The gateway refused heatup's secret (HTTP 401/403)."""

    code = "auth_failed"


class UnknownSession(GatewayError):
    """The gateway has no session with this id (HTTP 404)."""

    code = "unknown_session"


class RequestRejected(GatewayError):
    """The gateway rejected the request as malformed (HTTP 422): a bug on heatup's side."""

    code = "rejected"


class RpcFailed(GatewayError):
    """Any other failure: ``code`` is Telegram's error code or the HTTP status."""


# --- planning -------------------------------------------------------------------------------


class PlannerUnavailable(HeatupError):
    """The LLM could not give a usable plan (timeout, HTTP error, junk); ``outcome`` says
    which. The tokens an unusable answer cost still count."""

    def __init__(
        self,
        message: str,
        outcome: LLMOutcome,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens


# --- runs -------------------------------------------------------------------------------


class AlreadyRunning(HeatupError):
    """The session has a run in flight; a second one may not start."""


class SessionNotRunnable(HeatupError):
    """The session may not run now. ``refusal`` names the rule (``session.admit``)."""

    def __init__(self, message: str, refusal: Refusal) -> None:
        super().__init__(message)
        self.refusal = refusal
