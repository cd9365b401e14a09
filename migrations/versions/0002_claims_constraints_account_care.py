"""Claims, constraints and account care.

- ``sessions.applied_schedule`` is renamed ``applied_key`` (it holds the admin key);
- ``sessions`` gains ``account_created_at`` (admin-owned), ``flood_wait_at`` and
  ``flood_wait_s``;
- heatup's time columns of ``sessions`` hold well-formed, finite times only, and ``enabled``
  (``sessions`` and ``channels``) only 1 or 0 on SQLite; values an earlier hand edit left
  that the new constraints refuse are cleared first (a bad ``enabled`` becomes 0: disabled);
- ``warmup_runs.next_slot_at`` chains each session's slot rows;
- ``warmup_actions.outcome`` may be ``unknown``;
- new tables: ``channel_joins`` (the join ledger) and ``llm_token_usage`` (the daily budget).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
OLD_TIMES: Final = ("next_nominal_at", "next_run_at", "last_run_at", "cooldown_until")
NEW_TIMES: Final = ("account_created_at", "flood_wait_at")


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _time_check(column: str) -> tuple[str, str]:
    """The name and condition of the check on a time column, for this database."""
    if _sqlite():
        condition = (
            f"{column} IS NULL OR (typeof({column}) = 'text' "
            f"AND {column} GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' "
            f"AND datetime({column}) IS NOT NULL)"
        )
        return f"ck_sessions_{column}_is_time", condition
    return f"ck_sessions_{column}_finite", f"{column} IS NULL OR isfinite({column})"


def upgrade() -> None:
    sqlite = _sqlite()
    for column in OLD_TIMES:
        _, ok = _time_check(column)
        op.execute(f"UPDATE sessions SET {column} = NULL, applied_schedule = NULL WHERE NOT ({ok})")
    if sqlite:
        op.execute("UPDATE sessions SET enabled = 0 WHERE enabled NOT IN (0, 1)")
        op.execute("UPDATE channels SET enabled = 0 WHERE enabled NOT IN (0, 1)")

    with op.batch_alter_table("sessions") as batch:
        batch.alter_column("applied_schedule", new_column_name="applied_key")
        batch.add_column(sa.Column("account_created_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("flood_wait_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("flood_wait_s", sa.Integer()))
        batch.create_check_constraint(
            op.f("ck_sessions_flood_wait_s"), "flood_wait_s IS NULL OR flood_wait_s >= 0"
        )
        for column in (*NEW_TIMES, *OLD_TIMES):
            name, condition = _time_check(column)
            batch.create_check_constraint(op.f(name), condition)
        if sqlite:
            batch.create_check_constraint(op.f("ck_sessions_enabled_boolean"), "enabled IN (0, 1)")
    if sqlite:
        with op.batch_alter_table("channels") as batch:
            batch.create_check_constraint(op.f("ck_channels_enabled_boolean"), "enabled IN (0, 1)")

    with op.batch_alter_table("warmup_runs") as batch:
        batch.add_column(sa.Column("next_slot_at", sa.DateTime(timezone=True)))
        batch.create_check_constraint(
            op.f("ck_warmup_runs_next_slot_after"),
            "next_slot_at IS NULL OR next_slot_at > scheduled_for",
        )
    op.create_index(
        "ix_warmup_runs_session_id_started_at", "warmup_runs", ["session_id", "started_at"]
    )
    with op.batch_alter_table("warmup_actions") as batch:
        batch.drop_constraint(op.f("ck_warmup_actions_outcome"), type_="check")
        batch.create_check_constraint(
            op.f("ck_warmup_actions_outcome"), "outcome IN ('ok', 'failed', 'skipped', 'unknown')"
        )

    op.create_table(
        "channel_joins",
        sa.Column("id", BigId, nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=True),
        sa.Column("run_id", BigId, nullable=True),
        sa.Column("reserved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.CheckConstraint(
            "status IN ('reserved', 'joined', 'released')", name=op.f("ck_channel_joins_status")
        ),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name=op.f("fk_channel_joins_channel_id_channels"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_channel_joins_session_id_sessions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["warmup_runs.id"],
            name=op.f("fk_channel_joins_run_id_warmup_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_joins")),
    )
    op.create_index(
        "ix_channel_joins_channel_id_reserved_at", "channel_joins", ["channel_id", "reserved_at"]
    )
    op.create_index(
        "ix_channel_joins_session_id_reserved_at", "channel_joins", ["session_id", "reserved_at"]
    )
    op.create_table(
        "llm_token_usage",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_llm_token_usage")),
    )


def downgrade() -> None:
    sqlite = _sqlite()
    op.drop_table("llm_token_usage")
    op.drop_index("ix_channel_joins_session_id_reserved_at", table_name="channel_joins")
    op.drop_index("ix_channel_joins_channel_id_reserved_at", table_name="channel_joins")
    op.drop_table("channel_joins")
    op.execute("UPDATE warmup_actions SET outcome = 'failed' WHERE outcome = 'unknown'")
    with op.batch_alter_table("warmup_actions") as batch:
        batch.drop_constraint(op.f("ck_warmup_actions_outcome"), type_="check")
        batch.create_check_constraint(
            op.f("ck_warmup_actions_outcome"), "outcome IN ('ok', 'failed', 'skipped')"
        )
    op.drop_index("ix_warmup_runs_session_id_started_at", table_name="warmup_runs")
    with op.batch_alter_table("warmup_runs") as batch:
        batch.drop_constraint(op.f("ck_warmup_runs_next_slot_after"), type_="check")
        batch.drop_column("next_slot_at")
    if sqlite:
        with op.batch_alter_table("channels") as batch:
            batch.drop_constraint(op.f("ck_channels_enabled_boolean"), type_="check")
    with op.batch_alter_table("sessions") as batch:
        if sqlite:
            batch.drop_constraint(op.f("ck_sessions_enabled_boolean"), type_="check")
        for column in (*NEW_TIMES, *OLD_TIMES):
            name, _ = _time_check(column)
            batch.drop_constraint(op.f(name), type_="check")
        batch.drop_constraint(op.f("ck_sessions_flood_wait_s"), type_="check")
        batch.drop_column("flood_wait_s")
        batch.drop_column("flood_wait_at")
        batch.drop_column("account_created_at")
        batch.alter_column("applied_key", new_column_name="applied_schedule")
