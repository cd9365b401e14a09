"""A deterministic simulation of heatup's nodes (issue 30, part A), in the manner of
FoundationDB's simulation and TigerBeetle's VOPR.

One seed is one scenario (``scenario``): two or three machines share one store; dozens of
sessions on short schedules; thirty simulated minutes of crashes, restarts under the same
or another name, clock skews, partitions from the database, outages, gateway brownouts, API
bursts that meet the dispatcher's claims, console imports and admin edits; then every fault
heals, the cluster settles and every node stops cleanly.

- ``loop``: the event loop. Virtual time (the clock jumps to the next timer), ready
  callbacks in an order drawn from the seed, tasks and timers owned by the node that made
  them (a crash cancels them all at once).
- ``faults``, ``store``, ``gateway``, ``llm``: the ports, each call drawn from the seed:
  yield, delay, fail before its commit, commit and lose its answer, time out, answer slowly.
- ``node``, ``cluster``, ``events``: whole daemons built as ``service.py`` builds them, on
  those ports, and what happens to them.
- ``invariants``, ``history``: the promises, checked as the simulation runs and at its end.
- ``trace``, ``survey``: what a run leaves (a trace and its digest), and many seeds at once.

``pytest tests/sim`` runs 1,000 seeds over two processes (``--sim-seeds N``,
``--sim-first F``, ``--sim-processes P``); a failing seed is named with the one command that
replays it, in this process, with its trace (``--sim-seed S --sim-trace``).
``python -m bench.simulation --seeds N`` surveys many more.
"""
