"""An idempotent join ledger.

- ``channel_joins`` holds a run's place for a channel once (unique ``run_id, channel_id``): a
  reservation retried after its commit's answer was lost changes nothing. Duplicates an
  earlier retry left are dropped first (the first place is kept);
- an index on the places still reserved, by run, for settling them when a run ends.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "DELETE FROM channel_joins WHERE run_id IS NOT NULL AND id NOT IN "
        "(SELECT min(id) FROM channel_joins WHERE run_id IS NOT NULL "
        "GROUP BY run_id, channel_id)"
    )
    with op.batch_alter_table("channel_joins") as batch:
        batch.create_unique_constraint(
            op.f("uq_channel_joins_run_id_channel_id"), ["run_id", "channel_id"]
        )
    op.create_index(
        "ix_channel_joins_reserved_run_id",
        "channel_joins",
        ["run_id"],
        sqlite_where=sa.text("status = 'reserved'"),
        postgresql_where=sa.text("status = 'reserved'"),
    )


def downgrade() -> None:
    op.drop_index("ix_channel_joins_reserved_run_id", table_name="channel_joins")
    with op.batch_alter_table("channel_joins") as batch:
        batch.drop_constraint(op.f("uq_channel_joins_run_id_channel_id"), type_="unique")
