"""What the history must say once every node has stopped: each action row against the
gateway's calls, each join place against the joins that happened, each session's chain of
slot rows. (The invariants these serve are named in ``invariants``.)"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable
from typing import Final

from heatup_daemon.enums import ActionKind, JoinStatus, Outcome
from heatup_daemon.records import RunView
from tests.sim.gateway import GatewayWorld, Operation
from tests.sim.store import SimStore

Violated = Callable[[str, str], None]
GATEWAY_KINDS: Final = {
    ActionKind.JOIN_CHANNEL: "join_channel",
    ActionKind.READ_MESSAGES: "read_history",
    ActionKind.BROWSE_DIALOGS: "browse_dialogs",
}


def actions_match_gateway(store: SimStore, gateway: GatewayWorld, violated: Violated) -> None:
    """An ``ok`` row has a call of its kind that succeeded (a join, or its check)."""
    by_action = gateway.by_action
    for run in store.runs.values():
        for action in run.actions:
            wanted = GATEWAY_KINDS.get(action.kind)
            if action.outcome is not Outcome.OK or wanted is None:
                continue
            operations = by_action.get((run.id, action.seq), [])
            if not any(_answered(operation, wanted) for operation in operations):
                violated(
                    "action_rows_match_gateway",
                    f"run {run.id} action {action.seq} ({action.kind}) is ok, and no call "
                    "of it succeeded",
                )
    _calls_have_rows(store, gateway, violated)


def _calls_have_rows(store: SimStore, gateway: GatewayWorld, violated: Violated) -> None:
    """A call has its row, and a join that happened is not recorded as failed."""
    runs = store.runs
    for operation in gateway.operations:
        run = runs.get(operation.run or 0)
        actions = () if run is None else run.actions
        row = next((a for a in actions if a.seq == operation.seq), None)
        if row is None:
            violated(
                "action_rows_match_gateway",
                f"run {operation.run} action {operation.seq}: a {operation.op} call has no row",
            )
        elif operation.joined and not row.outcome.may_have_happened:
            violated(
                "action_rows_match_gateway",
                f"run {operation.run} action {operation.seq}: the join happened, and its row "
                f"says {row.outcome} ({row.error_code})",
            )


def places_match_gateway(store: SimStore, gateway: GatewayWorld, violated: Violated) -> None:
    store = store
    places = {
        (place["run_id"], store.channels[place["channel_id"]]["username"]): place["status"]
        for place in store.ledger
        if place["channel_id"] in store.channels
    }
    for operation in gateway.operations:
        if not operation.joined:
            continue
        status = places.get((operation.run, operation.channel))
        if status is None:
            violated(
                "join_places_add_up",
                f"run {operation.run} joined @{operation.channel} without a place",
            )
        elif status is JoinStatus.RELEASED:
            violated(
                "join_places_add_up",
                f"run {operation.run} joined @{operation.channel}, and its place was given back",
            )


def slot_chains(store: SimStore, violated: Violated) -> None:
    """Each session's scheduled rows, in slot order: each starts where the one before
    ended, unless the slots were placed anew in between."""
    rows: dict[int, list[RunView]] = defaultdict(list)
    for run in store.runs.values():
        if run.scheduled_for is not None and run.session_id is not None:
            rows[run.session_id].append(run)
    for session_id, chain in rows.items():
        chain.sort(key=lambda run: (run.scheduled_for, run.id))
        anchors = store.anchors.get(session_id, [])
        for before, after in itertools.pairwise(chain):
            if before.scheduled_for == after.scheduled_for:
                violated(
                    "slot_rows_chain",
                    f"session {after.gateway_session_id}: slot {after.scheduled_for} has two "
                    f"rows ({before.id}, {after.id})",
                )
            elif before.next_slot_at != after.scheduled_for and not any(
                before.id <= anchor < after.id for anchor in anchors
            ):
                violated(
                    "slot_rows_chain",
                    f"session {after.gateway_session_id}: row {before.id} leaves off at "
                    f"{before.next_slot_at}, and the next row {after.id} is for "
                    f"{after.scheduled_for}",
                )


def _answered(operation: Operation, wanted: str) -> bool:
    if operation.op == wanted and operation.result == "ok":
        return True
    return wanted == "join_channel" and operation.op == "is_member" and operation.member is True
