"""Once a defect: a claim whose commit answer is lost while the jobs already count an outage
never re-arms adopt_pending (Jobs._unavailable calls on_outage only on the first failure), so
the rows it wrote stay `running` with no task: never run, never reaped (the node's lease lives),
the session never claimed again, and still `running` after a clean stop."""

from __future__ import annotations

from typing import Any

from heatup_daemon.enums import Job, RunStatus
from heatup_daemon.errors import DatabaseUnavailable
from tests.unit.test_scheduler import world


async def test_second_lost_claim_answer_is_never_adopted() -> None:
    w = await world()
    for gid in (1, 2):
        await w.add_session(gid)
    await w.scheduler.prepare()
    store = w.store
    claim_due = store.claim_due
    lose = {"answers": 0}

    async def claim_then_lose_answer(*args: Any, **kw: Any) -> Any:
        claim = await claim_due(*args, **kw)  # committed ...
        if lose["answers"]:
            lose["answers"] -= 1
            raise DatabaseUnavailable("connection lost after COMMIT")  # ... answer lost
        return claim

    store.claim_due = claim_then_lose_answer  # type: ignore[method-assign]
    dispatch = w.scheduler.jobs.guarded(Job.DISPATCH, w.scheduler.dispatch)

    # 1) an outage begins with some other job (here: the reap job fails once)
    store.unavailable = True
    reap = w.scheduler.jobs.guarded(Job.REAP, w.scheduler.reap)
    assert await reap() is False
    assert w.in_flight.adopt_pending is True and w.scheduler.jobs.in_outage
    store.unavailable = False

    # 2) first dispatch pass after the database is back: adoption succeeds (nothing to
    #    adopt, adopt_pending=False), then the claim commits and its answer is lost
    lose["answers"] = 1
    assert await dispatch() is False
    landed = [r for r in store.runs.values() if r.status is RunStatus.RUNNING]
    assert len(landed) == 2 and len(w.in_flight) == 0

    # 3) the database answers from now on: many more passes, and the reaper
    for _ in range(5):
        assert await dispatch() is True
        await w.scheduler.reap()
        await w.in_flight.wait_all()
    still = [r for r in store.runs.values() if r.status is RunStatus.RUNNING]

    # 4) a clean stop
    await w.scheduler.stop(1)
    still = [r for r in store.runs.values() if r.status is RunStatus.RUNNING]
    assert not still  # the invariant: no `running` row after a clean stop


async def test_two_lost_claim_answers_in_a_row() -> None:
    """The same with no other job involved: the 'lost commits' fault twice in a row."""
    w = await world()
    for gid in (1, 2, 3):
        await w.add_session(gid)
    await w.scheduler.prepare()
    store = w.store
    claim_due = store.claim_due
    calls = {"n": 0}

    async def claim_then_lose_answer(policy: Any, now: Any, limit: int, *a: Any) -> Any:
        calls["n"] += 1
        claim = await claim_due(policy, now, 1 if calls["n"] <= 2 else limit, *a)
        if calls["n"] <= 2:
            raise DatabaseUnavailable("connection lost after COMMIT")
        return claim

    store.claim_due = claim_then_lose_answer  # type: ignore[method-assign]
    dispatch = w.scheduler.jobs.guarded(Job.DISPATCH, w.scheduler.dispatch)
    assert await dispatch() is False  # lost answer 1: outage begins, adopt_pending=True
    assert await dispatch() is False  # adopts claim 1's row, then lost answer 2
    for _ in range(3):
        await dispatch()
        await w.in_flight.wait_all()
    assert not [r for r in store.runs.values() if r.status is RunStatus.RUNNING]
