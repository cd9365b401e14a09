"""Per-tick work proportional to what changed.

- ``sessions.needs_reconcile``: set by the database itself when a row is inserted (its
  default) or one of the admin key's columns is updated (a trigger), cleared by heatup once
  the row is applied. Reconcile reads the marked rows through a partial index instead of
  comparing every row's key on every pass. Every existing row starts marked: the first
  reconcile after the upgrade reads each once.
- An index on the failed actions by channel and code, the evidence ``note_channel_failure``
  counts inside its write.

SQLite drops a table's triggers when a migration rebuilds it (``batch_alter_table``): a
later migration that rebuilds ``sessions`` must create ``tr_sessions_edited`` again
(``tests/integration/test_schema.py`` checks the trigger at head on both databases).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The admin key's columns (``session.KEY_FIELDS`` as of this revision).
KEY_COLUMNS: Final = (
    "gateway_session_id",
    "schedule",
    "jitter_seconds",
    "timezone",
    "enabled",
    "state",
    "label",
    "account_created_at",
)


def upgrade() -> None:
    op.add_column(
        "sessions",
        sa.Column("needs_reconcile", sa.Boolean(), server_default=sa.text("true"), nullable=False),
    )
    op.create_index(
        "ix_sessions_needs_reconcile",
        "sessions",
        ["id"],
        sqlite_where=sa.text("needs_reconcile"),
        postgresql_where=sa.text("needs_reconcile"),
    )
    columns = ", ".join(KEY_COLUMNS)
    if _sqlite():
        op.execute(
            f"CREATE TRIGGER tr_sessions_edited AFTER UPDATE OF {columns} ON sessions "
            "FOR EACH ROW WHEN NOT NEW.needs_reconcile BEGIN "
            "UPDATE sessions SET needs_reconcile = 1 WHERE id = NEW.id; END"
        )
    else:
        op.execute(
            "CREATE FUNCTION heatup_session_edited() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN NEW.needs_reconcile := true; RETURN NEW; END $$"
        )
        op.execute(
            f"CREATE TRIGGER tr_sessions_edited BEFORE UPDATE OF {columns} ON sessions "
            "FOR EACH ROW EXECUTE FUNCTION heatup_session_edited()"
        )
    op.create_index(
        "ix_warmup_actions_channel_error_code_finished_at",
        "warmup_actions",
        ["channel", "error_code", "finished_at"],
        sqlite_where=sa.text("error_code IS NOT NULL"),
        postgresql_where=sa.text("error_code IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_warmup_actions_channel_error_code_finished_at", table_name="warmup_actions")
    op.execute("DROP TRIGGER tr_sessions_edited" + ("" if _sqlite() else " ON sessions"))
    if not _sqlite():
        op.execute("DROP FUNCTION heatup_session_edited()")
    op.drop_index("ix_sessions_needs_reconcile", table_name="sessions")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("needs_reconcile")


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"
