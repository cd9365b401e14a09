"""SQLAlchemy models: the schema heatup's migrations build, constraint for constraint.

Admin-owned columns of ``sessions`` and ``channels`` may be edited by hand while heatup runs;
the database enforces what it can (CHECK, UNIQUE, foreign keys, well-formed finite times in
heatup's own time columns) and heatup validates the rest when it reads a row
(``heatup_daemon.validation``), recording why in ``invalid_reason``. Every datetime is
timezone-aware UTC in Python.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import JSON, TypeDecorator

from heatup_daemon.db.dialect import folded, index_nulls_first
from heatup_daemon.enums import (
    ActionKind,
    Actor,
    Change,
    JoinStatus,
    Outcome,
    PlanSource,
    RunStatus,
    SessionState,
    Standing,
    Surface,
    Trigger,
    sql_in,
)
from heatup_daemon.session import TIME_FIELDS

# SQLite has no 64-bit autoincrement type: only INTEGER PRIMARY KEY is an alias of the rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")

# Times the database itself keeps well-formed: finite on PostgreSQL; on SQLite, where any
# column holds any value, text that SQLite reads as a date and time.
SESSION_TIME_COLUMNS: Final = tuple(name for name in TIME_FIELDS if name != "created_at")


def time_checks(column: str) -> tuple[CheckConstraint, CheckConstraint]:
    finite = CheckConstraint(f"{column} IS NULL OR isfinite({column})", name=f"{column}_finite")
    well_formed = CheckConstraint(
        f"{column} IS NULL OR (typeof({column}) = 'text' "
        f"AND {column} GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' "
        f"AND datetime({column}) IS NOT NULL)",
        name=f"{column}_is_time",
    )
    return finite.ddl_if(dialect="postgresql"), well_formed.ddl_if(dialect="sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python on every backend (SQLite stores naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: heatup stores aware UTC times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # written by hand into SQLite
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


def _created_at() -> Mapped[datetime]:
    return mapped_column(UTCDateTime(), server_default=func.now(), nullable=False)


# A row's standing (``session.standing``) as its place in ``Standing``'s order, in SQL an
# index holds: the console filters and sorts the session list by it through that index,
# which only happens where a query has this very text (a test holds it to
# ``session.standing`` on every combination of its columns, on both databases).
_RANK: Final = {standing: rank for rank, standing in enumerate(Standing)}
STANDING_RANK_SQL: Final = (
    f"(CASE WHEN invalid_reason IS NOT NULL THEN {_RANK[Standing.INVALID]} "
    f"WHEN enabled IS NOT TRUE THEN {_RANK[Standing.DISABLED]} "
    f"WHEN state <> '{SessionState.ACTIVE}' THEN {_RANK[Standing.NEEDS_ATTENTION]} "
    f"ELSE {_RANK[Standing.ACTIVE]} END)"
)


class SessionRow(Base):
    """A registered session. Admins own the first group of columns, heatup the second."""

    __tablename__ = "sessions"
    __table_args__ = (
        CheckConstraint("gateway_session_id >= 1", name="gateway_id_positive"),
        CheckConstraint("jitter_seconds >= 0", name="jitter_not_negative"),
        CheckConstraint(sql_in("state", SessionState), name="state"),
        CheckConstraint("flood_wait_s IS NULL OR flood_wait_s >= 0", name="flood_wait_s"),
        *(check for column in SESSION_TIME_COLUMNS for check in time_checks(column)),
        # The dispatcher's due rows, and the session list's default order, whose pages the
        # index alone gives (ties by gateway id; the row's id for the page's rows).
        Index(
            "ix_sessions_next_run_at_gateway_session_id_id",
            "next_run_at",
            "gateway_session_id",
            "id",
        ),
        Index("ix_sessions_standing", text(STANDING_RANK_SQL), "gateway_session_id"),
        # The session list's label search (a prefix, in any case) and its orders.
        Index("ix_sessions_label_folded", folded(text("label"))),
        Index(
            "ix_sessions_last_run_at",
            index_nulls_first(text("last_run_at")),
            "gateway_session_id",
            "id",
        ),
        Index("ix_sessions_schedule_gateway_session_id", "schedule", "gateway_session_id"),
        Index(
            "ix_sessions_needs_reconcile",
            "id",
            sqlite_where=text("needs_reconcile"),
            postgresql_where=text("needs_reconcile"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Admin-owned.
    gateway_session_id: Mapped[int] = mapped_column(BigInteger, unique=True, nullable=False)
    label: Mapped[str | None] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(
        Boolean(create_constraint=True, name="enabled_boolean"),
        server_default=text("true"),
        nullable=False,
    )
    schedule: Mapped[str] = mapped_column(String(100), nullable=False)
    jitter_seconds: Mapped[int] = mapped_column(Integer, server_default="0", nullable=False)
    timezone: Mapped[str] = mapped_column(String(64), server_default="UTC", nullable=False)
    # When the Telegram account was created; NULL: when the row was registered.
    account_created_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # heatup-owned.
    state: Mapped[str] = mapped_column(
        String(20), server_default=SessionState.ACTIVE.value, nullable=False
    )
    state_reason: Mapped[str | None] = mapped_column(Text)
    invalid_reason: Mapped[str | None] = mapped_column(Text)
    # The admin key (``db.sessions.admin_key``) as of the last time heatup applied the row:
    # a row whose key differs was inserted or edited since, and is reconciled.
    applied_key: Mapped[str | None] = mapped_column(Text)
    # Set by the database when a row is inserted or an admin field changes (a trigger on the
    # admin key's columns, migration 0005), cleared once the row is applied: reconcile reads
    # these rows only, never the whole table.
    needs_reconcile: Mapped[bool] = mapped_column(
        Boolean(), server_default=text("true"), nullable=False
    )
    next_nominal_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cooldown_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The last flood wait Telegram imposed: when, and how many seconds.
    flood_wait_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    flood_wait_s: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), server_default=func.now(), onupdate=func.now(), nullable=False
    )


class ChannelRow(Base):
    """A channel of the admin-curated pool. ``username`` is lower case, without ``@``."""

    __tablename__ = "channels"
    __table_args__ = (
        CheckConstraint("length(username) >= 4 AND length(username) <= 32", name="username_length"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(32), unique=True, nullable=False)
    title: Mapped[str | None] = mapped_column(String(128))
    category: Mapped[str | None] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(
        Boolean(create_constraint=True, name="enabled_boolean"),
        server_default=text("true"),
        nullable=False,
    )
    invalid_reason: Mapped[str | None] = mapped_column(Text)
    # Set when the gateway reports the channel unusable for several sessions.
    flagged_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()


class SessionChannelRow(Base):
    """A pool channel a session has joined."""

    __tablename__ = "session_channels"

    session_id: Mapped[int] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    )
    channel_id: Mapped[int] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class JoinRow(Base):
    """The join ledger: one row per join a plan reserved. The account's join ramp and the
    pool's pace per channel count the rows that were not released, across every node."""

    __tablename__ = "channel_joins"
    __table_args__ = (
        CheckConstraint(sql_in("status", JoinStatus), name="status"),
        # A run's place for a channel, once: a retried reservation changes nothing.
        UniqueConstraint("run_id", "channel_id"),
        Index("ix_channel_joins_channel_id_reserved_at", "channel_id", "reserved_at"),
        Index("ix_channel_joins_session_id_reserved_at", "session_id", "reserved_at"),
        # The places still reserved, by run: what a run's end settles.
        Index(
            "ix_channel_joins_reserved_run_id",
            "run_id",
            sqlite_where=text(f"status = '{JoinStatus.RESERVED}'"),
            postgresql_where=text(f"status = '{JoinStatus.RESERVED}'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel_id: Mapped[int] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), nullable=False
    )
    # Kept (as NULL) when the session is removed: the channel's pace still counts the join.
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id", ondelete="SET NULL"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("warmup_runs.id", ondelete="SET NULL"))
    reserved_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)


class NodeRow(Base):
    """A process that runs runs (a daemon, or a ``heatup warmup``) and its lease. The process
    renews ``lease_until`` on the database's clock; a run is alive while the lease of its
    node is, and any node's reaper ends the runs of a node whose lease ran out."""

    __tablename__ = "nodes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    renewed_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    lease_until: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, index=True)


class RunRow(Base):
    """One warm-up run. Scheduled runs are unique per (session, nominal slot)."""

    __tablename__ = "warmup_runs"
    __table_args__ = (
        UniqueConstraint("session_id", "scheduled_for"),
        CheckConstraint(sql_in("trigger", Trigger), name="trigger"),
        CheckConstraint(sql_in("status", RunStatus), name="status"),
        CheckConstraint(
            f"plan_source IS NULL OR {sql_in('plan_source', PlanSource)}", name="source"
        ),
        CheckConstraint(
            "(trigger = 'schedule') = (scheduled_for IS NOT NULL)", name="slot_iff_scheduled"
        ),
        CheckConstraint(
            "next_slot_at IS NULL OR next_slot_at > scheduled_for", name="next_slot_after"
        ),
        Index("ix_warmup_runs_gateway_session_id_started_at", "gateway_session_id", "started_at"),
        Index("ix_warmup_runs_session_id_started_at", "session_id", "started_at"),
        Index("ix_warmup_runs_status_heartbeat_at", "status", "heartbeat_at"),
        # The reaper's question: the runs in flight of a node whose lease ran out.
        Index(
            "ix_warmup_runs_running_node_id",
            "node_id",
            sqlite_where=text(f"status = '{RunStatus.RUNNING}'"),
            postgresql_where=text(f"status = '{RunStatus.RUNNING}'"),
        ),
        # The history by time: retention, the activity page's range, the hourly roll-up
        # (which counts by status from the index alone).
        Index("ix_warmup_runs_started_at_status", "started_at", "status"),
        # The activity page's node filter, newest first.
        Index("ix_warmup_runs_node_id", "node", "id"),
        # One run in flight per session, whichever process or trigger starts it.
        Index(
            "uq_warmup_runs_one_running",
            "session_id",
            unique=True,
            sqlite_where=text(f"status = '{RunStatus.RUNNING}'"),
            postgresql_where=text(f"status = '{RunStatus.RUNNING}'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Kept (as NULL) when an admin removes the session, so its history survives.
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id", ondelete="SET NULL"))
    gateway_session_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    trigger: Mapped[str] = mapped_column(String(16), nullable=False)
    # The nominal slot time (without jitter) for scheduled runs; NULL for api and cli runs.
    scheduled_for: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The session's next nominal slot after this row's. Every slot has exactly one row, so a
    # session's scheduled rows form a chain: each row's scheduled_for is the previous row's
    # next_slot_at. A skipped row whose next_slot_at is several periods on stands for every
    # slot in between (missed while heatup was down, coalesced, or in a cooldown).
    next_slot_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # When the run was due (the jittered slot time, or the request time).
    due_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    plan_source: Mapped[str | None] = mapped_column(String(16))
    plan_model: Mapped[str | None] = mapped_column(String(200))
    plan: Mapped[Any | None] = mapped_column(JSON)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    node: Mapped[str] = mapped_column(String(128), nullable=False)
    # The ``nodes`` row whose lease keeps the run alive (no foreign key: the history keeps
    # the id after the node's row is gone). NULL for runs written before leases existed,
    # which the reaper judges by ``heartbeat_at``.
    node_id: Mapped[int | None] = mapped_column(BigInteger)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    # The run's last sign of life: its start, then each gateway call it was cleared to make.
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)

    actions: Mapped[list[ActionRow]] = relationship(
        back_populates="run", order_by="ActionRow.seq", passive_deletes=True
    )


class ActionRow(Base):
    """One executed action of a run, written as soon as the action ends."""

    __tablename__ = "warmup_actions"
    __table_args__ = (
        UniqueConstraint("run_id", "seq"),
        # The evidence against a pool channel (``note_channel_failure``): failures only.
        Index(
            "ix_warmup_actions_channel_error_code_finished_at",
            "channel",
            "error_code",
            "finished_at",
            sqlite_where=text("error_code IS NOT NULL"),
            postgresql_where=text("error_code IS NOT NULL"),
        ),
        CheckConstraint(sql_in("kind", ActionKind), name="kind"),
        CheckConstraint(sql_in("outcome", Outcome), name="outcome"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(
        ForeignKey("warmup_runs.id", ondelete="CASCADE"), nullable=False
    )
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    channel: Mapped[str | None] = mapped_column(String(32))
    planned_duration_s: Mapped[float | None] = mapped_column(Float)
    actual_duration_s: Mapped[float | None] = mapped_column(Float)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_text: Mapped[str | None] = mapped_column(String(500))
    gateway_latency_s: Mapped[float | None] = mapped_column(Float)

    run: Mapped[RunRow] = relationship(back_populates="actions")


class TokenUsageRow(Base):
    """LLM tokens spent per UTC day by every node together (``llm.daily_token_budget``)."""

    __tablename__ = "llm_token_usage"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    tokens: Mapped[int] = mapped_column(BigInteger, nullable=False)


class TokenSettlementRow(Base):
    """One plan's reservation of LLM tokens, until it is settled with what the plan used:
    a settlement asked twice (its answer lost after the commit) counts once. Kept with the
    history's retention."""

    __tablename__ = "llm_token_settlements"

    key: Mapped[str] = mapped_column(String(36), primary_key=True)
    day: Mapped[date] = mapped_column(Date, nullable=False)
    reserved: Mapped[int] = mapped_column(BigInteger, nullable=False)
    settled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)


class AuditRow(Base):
    """One admin's change to the registry, through the CLI, the API or the console: who,
    what, when, and the row before and after (JSON of its admin columns). Written in the
    change's own transaction; kept when the session is removed."""

    __tablename__ = "audit_log"
    __table_args__ = (
        CheckConstraint(sql_in("via", Surface), name="via"),
        CheckConstraint(sql_in("actor", Actor), name="actor"),
        CheckConstraint(sql_in("action", Change), name="action"),
        Index("ix_audit_log_session", "gateway_session_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = _created_at()
    via: Mapped[str] = mapped_column(String(16), nullable=False)
    actor: Mapped[str] = mapped_column(String(16), nullable=False)
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    gateway_session_id: Mapped[int | None] = mapped_column(BigInteger)
    channel: Mapped[str | None] = mapped_column(String(32))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class RunHourRow(Base):
    """The runs that started in an hour (UTC), by status: the console's charts read these
    rather than the history (``db.activity`` keeps them). Every status has a row for each
    hour rolled up, zero included, so an hour with no runs is told from one not yet
    counted."""

    __tablename__ = "run_hours"
    __table_args__ = (CheckConstraint(sql_in("status", RunStatus), name="status"),)

    hour: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    runs: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # When a node last counted the hour (its own clock).
    counted_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class ActionHourRow(Base):
    """The actions of the runs that started in an hour (UTC), by outcome (as ``run_hours``)."""

    __tablename__ = "action_hours"
    __table_args__ = (CheckConstraint(sql_in("outcome", Outcome), name="outcome"),)

    hour: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(16), primary_key=True)
    actions: Mapped[int] = mapped_column(BigInteger, nullable=False)
    counted_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class ChannelMembersRow(Base):
    """How many sessions are members of each pool channel, as last counted (``db.activity``
    counts them with the hours): the channel page reads these rather than every row of
    ``session_channels``."""

    __tablename__ = "channel_members"

    channel_id: Mapped[int] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True
    )
    sessions: Mapped[int] = mapped_column(BigInteger, nullable=False)
    counted_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
