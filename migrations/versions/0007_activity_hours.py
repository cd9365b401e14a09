"""What the console reads on a large pool: the history rolled up by hour for its charts
(runs by status and actions by outcome for each hour, ``db.activity``; the runs' time index
also holds their status, so that an hour is counted from the index alone), each channel's
members as last counted, the runs by node, the sessions by standing, label, last run and
schedule, and the session list's default order from its index alone.

The tables start empty: the daemon fills them from the history when it starts (a week of
it) and keeps them current.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The closed sets as of this revision (``enums.RunStatus``, ``enums.Outcome``).
STATUSES = ("running", "succeeded", "partial", "failed", "interrupted", "skipped")
OUTCOMES = ("ok", "failed", "skipped", "unknown")
# ``models.STANDING_RANK_SQL`` as of this revision.
STANDING_RANK = (
    "(CASE WHEN invalid_reason IS NOT NULL THEN 3 WHEN enabled IS NOT TRUE THEN 2 "
    "WHEN state <> 'active' THEN 1 ELSE 0 END)"
)


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


def upgrade() -> None:
    op.create_table(
        "run_hours",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("runs", sa.BigInteger(), nullable=False),
        sa.Column("counted_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(_in("status", STATUSES), name=op.f("ck_run_hours_status")),
        sa.PrimaryKeyConstraint("hour", "status", name=op.f("pk_run_hours")),
    )
    op.create_table(
        "action_hours",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("actions", sa.BigInteger(), nullable=False),
        sa.Column("counted_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(_in("outcome", OUTCOMES), name=op.f("ck_action_hours_outcome")),
        sa.PrimaryKeyConstraint("hour", "outcome", name=op.f("pk_action_hours")),
    )
    op.create_table(
        "channel_members",
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("sessions", sa.BigInteger(), nullable=False),
        sa.Column("counted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name=op.f("fk_channel_members_channel_id_channels"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("channel_id", name=op.f("pk_channel_members")),
    )
    op.create_index("ix_warmup_runs_started_at_status", "warmup_runs", ["started_at", "status"])
    op.drop_index("ix_warmup_runs_started_at", table_name="warmup_runs")
    op.create_index("ix_warmup_runs_node_id", "warmup_runs", ["node", "id"])
    op.create_index(
        "ix_sessions_next_run_at_gateway_session_id_id",
        "sessions",
        ["next_run_at", "gateway_session_id", "id"],
    )
    op.drop_index("ix_sessions_next_run_at", table_name="sessions")
    op.create_index(
        "ix_sessions_standing", "sessions", [sa.text(STANDING_RANK), "gateway_session_id"]
    )
    # ``dialect.folded(label)``: lower case in code point order, for prefix ranges.
    postgresql = op.get_bind().dialect.name == "postgresql"
    folded = '(lower(label) COLLATE "C")' if postgresql else "lower(label)"
    op.create_index("ix_sessions_label_folded", "sessions", [sa.text(folded)])
    # ``dialect.index_nulls_first``: sessions that never ran first (SQLite's own order).
    last_run = "last_run_at NULLS FIRST" if postgresql else "last_run_at"
    op.create_index(
        "ix_sessions_last_run_at", "sessions", [sa.text(last_run), "gateway_session_id", "id"]
    )
    op.create_index(
        "ix_sessions_schedule_gateway_session_id", "sessions", ["schedule", "gateway_session_id"]
    )
    if postgresql:
        op.execute("ANALYZE sessions")  # the planner's figures for the new expressions


def downgrade() -> None:
    op.drop_index("ix_sessions_schedule_gateway_session_id", table_name="sessions")
    op.drop_index("ix_sessions_last_run_at", table_name="sessions")
    op.drop_index("ix_sessions_label_folded", table_name="sessions")
    op.drop_index("ix_sessions_standing", table_name="sessions")
    op.drop_index("ix_warmup_runs_node_id", table_name="warmup_runs")
    op.create_index("ix_sessions_next_run_at", "sessions", ["next_run_at"])
    op.drop_index("ix_sessions_next_run_at_gateway_session_id_id", table_name="sessions")
    op.create_index("ix_warmup_runs_started_at", "warmup_runs", ["started_at"])
    op.drop_index("ix_warmup_runs_started_at_status", table_name="warmup_runs")
    op.drop_table("channel_members")
    op.drop_table("action_hours")
    op.drop_table("run_hours")
