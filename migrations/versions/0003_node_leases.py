"""Node leases.

- new table ``nodes``: each process that runs runs holds a lease row and renews it on the
  database's clock;
- ``warmup_runs.node_id``: the node whose lease keeps a run alive; runs written before this
  revision keep NULL and are judged by their heartbeat, as before.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("id", BigId, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("renewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nodes")),
    )
    op.create_index(op.f("ix_nodes_lease_until"), "nodes", ["lease_until"])
    with op.batch_alter_table("warmup_runs") as batch:
        batch.add_column(sa.Column("node_id", sa.BigInteger(), nullable=True))
    op.create_index(
        "ix_warmup_runs_running_node_id",
        "warmup_runs",
        ["node_id"],
        sqlite_where=sa.text("status = 'running'"),
        postgresql_where=sa.text("status = 'running'"),
    )


def downgrade() -> None:
    op.drop_index("ix_warmup_runs_running_node_id", table_name="warmup_runs")
    with op.batch_alter_table("warmup_runs") as batch:
        batch.drop_column("node_id")
    op.drop_index(op.f("ix_nodes_lease_until"), table_name="nodes")
    op.drop_table("nodes")
