"""Succession on one host: a restarted daemon ends its dead predecessor's runs at once.

Another host cannot tell a dead process from a slow one, so a node's runs stay ``running``
until its lease runs out (``scheduler.stale_run_s``) and a reaper ends them. A process
on the same host can tell: each daemon holds an exclusive ``flock`` on a marker file of its
own for as long as it lives, and the kernel drops that lock the moment the process dies,
however it dies (SIGKILL, the watchdog's SIGABRT, a crash). When a daemon takes its lease it
tries the lock of every other marker in the folder; one it can take was left by a process
that is gone, so that node's running runs end ``interrupted`` and its lease is dropped at
once (``LeaseStore.end_dead_node``), and the marker is removed.

The folder is the SQLite database's (markers sit beside the file, as its lock does), else
systemd's ``$STATE_DIRECTORY``: the host's own disk, shared by the daemons of one
installation. Without either (PostgreSQL, no state directory) there is no succession, and
the lease decides as on any other host. A marker is written and locked under a temporary
name, then renamed into place, so a marker in sight is locked for as long as its process
lives. It names its node (id and name) and its database (a digest of the URL without its
password): a dead marker of another database is removed without a write, and a node row of
that id with another name is left alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from heatup_daemon.config.sections import DatabaseSettings, masked_database_url
from heatup_daemon.errors import DatabaseUnavailable
from heatup_daemon.records import Node
from heatup_daemon.stores import LeaseStore
from heatup_daemon.timing.clock import Clock

log = logging.getLogger(__name__)

SUFFIX: Final = ".lock"


@dataclass(slots=True)
class Found:
    """A marker whose process is gone, locked by this one until ``remove``."""

    path: Path
    handle: IO[bytes]
    node: Node | None  # None: another database's, or unreadable

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.handle.close()


class Markers:
    """This host's markers of live daemons, each ``<prefix><node id>.lock`` in ``folder``."""

    def __init__(self, folder: Path, prefix: str, database: str) -> None:
        self._folder = folder
        self._prefix = prefix
        self._database = database
        self._own: dict[int, IO[bytes]] = {}

    @classmethod
    def of(
        cls, database: DatabaseSettings, environ: Mapping[str, str] = os.environ
    ) -> Markers | None:
        """Beside the SQLite database, else in ``$STATE_DIRECTORY``; ``None`` without either."""
        key = hashlib.sha256(masked_database_url(database.url).encode()).hexdigest()[:16]
        path = database.sqlite_path
        if path is not None:
            return cls(path.resolve().parent, f"{path.name}.node-", key)
        state = environ.get("STATE_DIRECTORY", "").split(":")[0]
        return cls(Path(state), "heatup.node-", key) if state else None

    def mark(self, node: Node) -> bool:
        """Mark ``node``'s process alive on this host for as long as it lives (until
        ``unmark``); ``False`` (and a warning) if the folder cannot hold the marker."""
        path = self._path(node.id)
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        content = {"node": node.id, "name": node.name, "database": self._database}
        try:
            handle = open(draft, "wb")
        except OSError as exc:
            self._cannot_mark(exc)
            return False
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            handle.write(json.dumps({**content, "pid": os.getpid()}).encode())
            handle.flush()
            draft.rename(path)
        except OSError as exc:
            handle.close()
            with contextlib.suppress(OSError):
                draft.unlink()
            self._cannot_mark(exc)
            return False
        self._own[node.id] = handle
        return True

    def _cannot_mark(self, exc: OSError) -> None:
        log.warning(
            "cannot mark this daemon alive in %s (%s): a successor on this host will wait "
            "for its lease to run out",
            self._folder,
            exc,
        )

    def unmark(self, node: Node) -> None:
        handle = self._own.pop(node.id, None)
        if handle is not None:
            with contextlib.suppress(FileNotFoundError):
                self._path(node.id).unlink()
            handle.close()

    def dead(self) -> Iterator[Found]:
        """The markers whose process is gone, each locked until the caller removes it."""
        own = {self._path(node_id) for node_id in self._own}
        try:
            paths = sorted(self._folder.iterdir())
        except OSError:
            return
        for path in paths:
            name = path.name
            if path in own or not (name.startswith(self._prefix) and name.endswith(SUFFIX)):
                continue
            try:
                handle = open(path, "rb")
            except OSError:  # gone meanwhile, or another user's
                continue
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # its process lives
                handle.close()
                continue
            yield Found(path, handle, self._node_of(handle))

    def _node_of(self, handle: IO[bytes]) -> Node | None:
        try:
            content = json.loads(handle.read())
            if content["database"] != self._database:
                return None
            return Node(int(content["node"]), str(content["name"]))
        except (ValueError, KeyError, TypeError):
            return None

    def _path(self, node_id: int) -> Path:
        return self._folder / f"{self._prefix}{node_id}{SUFFIX}"


async def end_dead_predecessors(markers: Markers, store: LeaseStore, clock: Clock) -> int:
    """End the runs and leases of the nodes whose process on this host is gone; how many
    runs ended. A database outage leaves a marker for the next start (the lease runs out
    meanwhile)."""
    ended = 0
    for found in markers.dead():
        try:
            if found.node is not None:
                runs = await store.end_dead_node(found.node, clock.now())
                ended += runs
                log.warning(
                    "node %s (id %d) stopped on this host without ending its runs: its %d "
                    "runs in flight end now (interrupted)",
                    found.node.name,
                    found.node.id,
                    runs,
                )
        except DatabaseUnavailable as exc:
            log.warning("cannot end the runs of node %s yet: %s", found.node, exc)
            found.handle.close()
            continue
        found.remove()
    return ended
