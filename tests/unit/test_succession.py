"""Succession on one host: a marker's lock tells a live process from a dead one, and a
successor ends the dead one's runs and lease at once."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from heatup_daemon.config.sections import DatabaseSettings
from heatup_daemon.enums import RunStatus, Trigger
from heatup_daemon.records import Node
from heatup_daemon.succession import Markers, end_dead_predecessors
from heatup_daemon.testing import FakeClock, InMemoryStore
from tests.builders import session_spec

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
DATABASE = "postgresql+asyncpg://heatup:pw@db.example/heatup"
# A process that marks a node alive, says so, and lives until it is killed.
HOLDER = """
import sys
from pathlib import Path
from heatup_daemon.records import Node
from heatup_daemon.succession import Markers
markers = Markers(Path(sys.argv[1]), "heatup.node-", sys.argv[2])
assert markers.mark(Node(int(sys.argv[3]), sys.argv[4]))
print("marked", flush=True)
sys.stdin.read()
"""


class Holder:
    """Another process holding a node's marker, until it is killed."""

    def __init__(self, folder: Path, node: Node, database: str = "db") -> None:
        argv = [sys.executable, "-c", HOLDER, str(folder), database, str(node.id), node.name]
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline() == "marked\n"

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


def markers_in(folder: Path, database: str = "db") -> Markers:
    return Markers(folder, "heatup.node-", database)


def test_a_live_process_is_never_taken_for_dead(tmp_path: Path) -> None:
    holder = Holder(tmp_path, Node(7, "vm"))
    try:
        assert list(markers_in(tmp_path).dead()) == []
    finally:
        holder.kill()
    found = list(markers_in(tmp_path).dead())
    assert [f.node for f in found] == [Node(7, "vm")]
    for f in found:
        f.remove()
    assert list(tmp_path.iterdir()) == []


def test_own_markers_and_other_files_are_left_alone(tmp_path: Path) -> None:
    markers = markers_in(tmp_path)
    assert markers.mark(Node(1, "vm"))
    (tmp_path / "heatup.db.lock").write_text("1\n")
    assert list(markers.dead()) == []
    markers.unmark(Node(1, "vm"))
    assert [p.name for p in tmp_path.iterdir()] == ["heatup.db.lock"]


def test_a_marker_of_another_database_names_no_node(tmp_path: Path) -> None:
    Holder(tmp_path, Node(3, "vm"), database="other").kill()
    found = list(markers_in(tmp_path).dead())
    assert [f.node for f in found] == [None]
    for f in found:
        f.remove()


def test_markers_sit_beside_a_sqlite_database_else_in_the_state_directory(
    tmp_path: Path,
) -> None:
    sqlite = Markers.of(DatabaseSettings(url=f"sqlite:///{tmp_path}/heatup.db"), {})
    assert sqlite is not None and sqlite.mark(Node(4, "vm"))
    assert (tmp_path / "heatup.db.node-4.lock").exists()
    sqlite.unmark(Node(4, "vm"))
    state = {"STATE_DIRECTORY": f"{tmp_path}/state:{tmp_path}/other"}
    postgres = Markers.of(DatabaseSettings(url=DATABASE), state)
    (tmp_path / "state").mkdir()
    assert postgres is not None and postgres.mark(Node(5, "vm"))
    assert (tmp_path / "state" / "heatup.node-5.lock").exists()
    postgres.unmark(Node(5, "vm"))
    assert Markers.of(DatabaseSettings(url=DATABASE), {}) is None


def test_a_folder_that_cannot_hold_a_marker_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert not markers_in(tmp_path / "missing").mark(Node(1, "vm"))
    assert "a successor on this host will wait" in caplog.text
    assert list(markers_in(tmp_path / "missing").dead()) == []


async def test_a_successor_ends_the_dead_nodes_runs_and_lease(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = InMemoryStore(FakeClock(NOW))
    for gateway_id in (1, 2):
        await store.add_session(session_spec(gateway_id, "1h"))
    dead = (await store.register_node("vm", 120, NOW)).node
    alive = (await store.register_node("vm", 120, NOW)).node
    cut = await store.start_run(1, Trigger.CLI, NOW, dead)
    kept = await store.start_run(2, Trigger.CLI, NOW, alive)
    Holder(tmp_path, dead).kill()
    holder = Holder(tmp_path, alive)
    successor = markers_in(tmp_path)
    try:
        with caplog.at_level(logging.WARNING):
            assert await end_dead_predecessors(successor, store, FakeClock(NOW)) == 1
    finally:
        holder.kill()
    assert (await store.get_run(cut.id)).status is RunStatus.INTERRUPTED
    assert (await store.get_run(kept.id)).status is RunStatus.RUNNING
    assert await store.renew_node(dead, 120, NOW) is None
    assert "its 1 runs in flight end now" in caplog.text
    assert not (tmp_path / f"heatup.node-{dead.id}.lock").exists()
