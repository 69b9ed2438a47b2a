"""A history checker for mrcache's consistency promises, in the manner of Jepsen and Elle.

It drives a real platform (``mrcache up``: three regions, two caches each, the
relays, the reconciler) with many concurrent clients and a system of record,
injects faults on a seeded schedule, records every operation with the times it
was invoked and completed and what it returned, and checks the history against
the invariants the README states (:mod:`tests.consistency.invariants`).

* :mod:`~tests.consistency.history`: what an operation, a fault and a history are.
* :mod:`~tests.consistency.database`: the system of record (a database behind an
  HTTP origin, publishing its own change events).
* :mod:`~tests.consistency.workload`: the seeded operations and the clients.
* :mod:`~tests.consistency.faults`: the seeded fault schedule and what injects it.
* :mod:`~tests.consistency.harness`: the platform under test and its network.
* :mod:`~tests.consistency.invariants`: the checks, and the minimal failing
  history printed for each violation.
* :mod:`~tests.consistency.run`: one run from seed to verdict
  (``python -m bench.consistency`` runs it long).
"""
