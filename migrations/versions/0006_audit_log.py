"""The audit log: every admin's change to the registry, through the CLI, the API or the
console, with who made it, when, and the row before and after.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# The closed sets as of this revision (``enums.Surface``, ``Actor``, ``Change``).
SURFACES = ("cli", "api", "console")
ACTORS = ("cli", "api.token", "no token")
CHANGES = (
    "register",
    "edit",
    "enable",
    "disable",
    "remove",
    "add channel",
    "enable channel",
    "disable channel",
)


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", BigId, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("gateway_session_id", sa.BigInteger(), nullable=True),
        sa.Column("channel", sa.String(length=32), nullable=True),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.CheckConstraint(_in("via", SURFACES), name=op.f("ck_audit_log_via")),
        sa.CheckConstraint(_in("actor", ACTORS), name=op.f("ck_audit_log_actor")),
        sa.CheckConstraint(_in("action", CHANGES), name=op.f("ck_audit_log_action")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_session", "audit_log", ["gateway_session_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_session", table_name="audit_log")
    op.drop_table("audit_log")
