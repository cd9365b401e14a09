"""The statements that write a run's action rows, built once per database (a run's hot path
executes them with new values only). Their parameters are named ``b_*``: a column's own
name is reserved in VALUES and SET."""

from __future__ import annotations

import functools
from typing import Any, Final

from sqlalchemy import bindparam

from heatup_daemon.db.dialect import insert
from heatup_daemon.db.models import ActionRow, SessionChannelRow
from heatup_daemon.records import ActionRecord

ACTION_FIELDS: Final = (
    "kind",
    "channel",
    "planned_duration_s",
    "actual_duration_s",
    "started_at",
    "finished_at",
    "outcome",
    "error_code",
    "error_text",
    "gateway_latency_s",
)


def action_values(run_id: int, record: ActionRecord) -> dict[str, Any]:
    values = {"b_run_id": run_id, "b_seq": record.seq}
    values.update((f"b_{name}", getattr(record, name)) for name in ACTION_FIELDS)
    return values


@functools.cache
def action_upsert(dialect: str) -> Any:
    """Write an action's row, or rewrite it (its in-flight row, or a retried write)."""
    columns = ("run_id", "seq", *ACTION_FIELDS)
    statement = insert(dialect, ActionRow).values(
        {name: bindparam(f"b_{name}") for name in columns}
    )
    return statement.on_conflict_do_update(
        index_elements=[ActionRow.run_id, ActionRow.seq],
        set_={name: statement.excluded[name] for name in ACTION_FIELDS},
    )


@functools.cache
def member_insert(dialect: str) -> Any:
    """The session joined the channel (kept once)."""
    columns = ("session_id", "channel_id", "joined_at")
    statement = insert(dialect, SessionChannelRow).values({c: bindparam(f"b_{c}") for c in columns})
    return statement.on_conflict_do_nothing()
