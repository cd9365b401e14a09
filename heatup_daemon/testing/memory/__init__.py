"""``InMemoryStore``: the ports of ``heatup_daemon.stores`` over plain dictionaries.

For unit tests of the scheduler, the runner and the API without a database. It keeps the
same contract as ``db.repository.Repository`` (``tests/integration/test_store_contract.py``
runs one suite against both), and its modules are laid out as the repository's are: the
registry, scheduling, runs, the join ledger, the token ledger and the leases, over the
tables of ``tables.py``. It replaces the repository's queries, not its decisions: what a
decision is (admission, standing, a slot, an account's age, a join's reservation, a
channel's flag, a settled place) comes from the same pure functions the repository calls,
and it clips heatup's texts as the store does (``db.texts``).

Every operation completes without yielding to the event loop, so each is atomic the way a
database transaction is. ``unavailable = True`` makes every operation raise
``DatabaseUnavailable``, as in an outage. Rows may be written with any values
(``sessions[id][column] = ...``), as an admin's hand edit would. Rows are stamped with the
given ``clock``, as a database stamps them with its own.
"""

from __future__ import annotations

from heatup_daemon.stores import NodeStore
from heatup_daemon.testing.memory.leases import MemoryLeases
from heatup_daemon.testing.memory.ledger import MemoryLedger
from heatup_daemon.testing.memory.registry import MemoryRegistry
from heatup_daemon.testing.memory.runs import MemoryRuns
from heatup_daemon.testing.memory.scheduling import MemoryScheduling
from heatup_daemon.testing.memory.tokens import MemoryTokens


class InMemoryStore(
    MemoryRegistry,
    MemoryScheduling,
    MemoryRuns,
    MemoryLedger,
    MemoryTokens,
    MemoryLeases,
    NodeStore,
):
    """Every port but ``Console``, declared so that mypy holds it to them."""


__all__ = ["InMemoryStore"]
