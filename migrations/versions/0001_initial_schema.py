"""Initial schema: sessions, the channel pool, joined channels, runs and actions.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time(name: str, *, nullable: bool = True, now: bool = False) -> sa.Column[object]:
    default = sa.func.now() if now else None
    return sa.Column(name, sa.DateTime(timezone=True), server_default=default, nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "channels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=32), nullable=False),
        sa.Column("title", sa.String(length=128), nullable=True),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("invalid_reason", sa.Text(), nullable=True),
        sa.Column("flagged_reason", sa.Text(), nullable=True),
        _time("created_at", nullable=False, now=True),
        sa.CheckConstraint(
            "length(username) >= 4 AND length(username) <= 32",
            name=op.f("ck_channels_username_length"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channels")),
        sa.UniqueConstraint("username", name=op.f("uq_channels_username")),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("gateway_session_id", sa.BigInteger(), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=True),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("schedule", sa.String(length=100), nullable=False),
        sa.Column("jitter_seconds", sa.Integer(), server_default="0", nullable=False),
        sa.Column("timezone", sa.String(length=64), server_default="UTC", nullable=False),
        sa.Column("state", sa.String(length=20), server_default="active", nullable=False),
        sa.Column("state_reason", sa.Text(), nullable=True),
        sa.Column("invalid_reason", sa.Text(), nullable=True),
        sa.Column("applied_schedule", sa.Text(), nullable=True),
        _time("next_nominal_at"),
        _time("next_run_at"),
        _time("last_run_at"),
        _time("cooldown_until"),
        _time("created_at", nullable=False, now=True),
        _time("updated_at", nullable=False, now=True),
        sa.CheckConstraint("gateway_session_id >= 1", name=op.f("ck_sessions_gateway_id_positive")),
        sa.CheckConstraint("jitter_seconds >= 0", name=op.f("ck_sessions_jitter_not_negative")),
        sa.CheckConstraint(
            "state IN ('active', 'needs_attention')", name=op.f("ck_sessions_state")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
        sa.UniqueConstraint("gateway_session_id", name=op.f("uq_sessions_gateway_session_id")),
    )
    op.create_index("ix_sessions_next_run_at", "sessions", ["next_run_at"])
    op.create_table(
        "session_channels",
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        _time("joined_at", nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name=op.f("fk_session_channels_channel_id_channels"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_session_channels_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "channel_id", name=op.f("pk_session_channels")),
    )
    op.create_index(op.f("ix_session_channels_channel_id"), "session_channels", ["channel_id"])
    op.create_table(
        "warmup_runs",
        sa.Column("id", BigId, nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=True),
        sa.Column("gateway_session_id", sa.BigInteger(), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        _time("scheduled_for"),
        _time("due_at", nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("plan_source", sa.String(length=16), nullable=True),
        sa.Column("plan_model", sa.String(length=200), nullable=True),
        sa.Column("plan", sa.JSON(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("node", sa.String(length=128), nullable=False),
        _time("started_at", nullable=False),
        _time("heartbeat_at"),
        _time("finished_at"),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "(trigger = 'schedule') = (scheduled_for IS NOT NULL)",
            name=op.f("ck_warmup_runs_slot_iff_scheduled"),
        ),
        sa.CheckConstraint(
            "plan_source IS NULL OR plan_source IN ('llm', 'fallback')",
            name=op.f("ck_warmup_runs_source"),
        ),
        sa.CheckConstraint(
            "status IN ('running', 'succeeded', 'partial', 'failed', 'interrupted', 'skipped')",
            name=op.f("ck_warmup_runs_status"),
        ),
        sa.CheckConstraint(
            "trigger IN ('schedule', 'api', 'cli')", name=op.f("ck_warmup_runs_trigger")
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_warmup_runs_session_id_sessions"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_warmup_runs")),
        sa.UniqueConstraint(
            "session_id", "scheduled_for", name=op.f("uq_warmup_runs_session_id_scheduled_for")
        ),
    )
    op.create_index(
        "ix_warmup_runs_gateway_session_id_started_at",
        "warmup_runs",
        ["gateway_session_id", "started_at"],
    )
    op.create_index("ix_warmup_runs_started_at", "warmup_runs", ["started_at"])
    op.create_index("ix_warmup_runs_status_heartbeat_at", "warmup_runs", ["status", "heartbeat_at"])
    running = sa.text("status = 'running'")
    op.create_index(
        "uq_warmup_runs_one_running",
        "warmup_runs",
        ["session_id"],
        unique=True,
        sqlite_where=running,
        postgresql_where=running,
    )
    op.create_table(
        "warmup_actions",
        sa.Column("id", BigId, nullable=False),
        sa.Column("run_id", BigId, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=True),
        sa.Column("planned_duration_s", sa.Float(), nullable=True),
        sa.Column("actual_duration_s", sa.Float(), nullable=True),
        _time("started_at", nullable=False),
        _time("finished_at", nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_text", sa.String(length=500), nullable=True),
        sa.Column("gateway_latency_s", sa.Float(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('join_channel', 'read_messages', 'browse_dialogs', 'idle')",
            name=op.f("ck_warmup_actions_kind"),
        ),
        sa.CheckConstraint(
            "outcome IN ('ok', 'failed', 'skipped')", name=op.f("ck_warmup_actions_outcome")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["warmup_runs.id"],
            name=op.f("fk_warmup_actions_run_id_warmup_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_warmup_actions")),
        sa.UniqueConstraint("run_id", "seq", name=op.f("uq_warmup_actions_run_id_seq")),
    )


def downgrade() -> None:
    op.drop_table("warmup_actions")
    op.drop_table("warmup_runs")
    op.drop_table("session_channels")
    op.drop_table("sessions")
    op.drop_table("channels")
