"""The invariants a history must satisfy, each a promise of the README.

``B`` is the freshness bound: the reconcile interval plus the time a pass and a
relay restart take (:attr:`History.bound`). A *barrier* is an acknowledged
operation after which, ``B`` seconds later, reads must reflect it:

* a write or delete through the API, or a system-of-record change whose event
  the broker acknowledged: reads show that state or a newer one;
* a namespace invalidation: (origin namespaces) reads show the database's state
  as of the invalidation's start or newer; (every namespace whose versions the
  platform assigns) no read serves a version that existed before it began;
* a tag invalidation: no read serves a version written with the tag before it began.

A region restored from an old snapshot may serve what the snapshot held until
``B`` after the restore: barriers in that region count from the restore's end.

=====================  ======================================================
invariant              holds when
=====================  ======================================================
version-order          acknowledged writes of a key, in real-time order, have
                       strictly increasing versions, never reused, never above
                       2^53 - 1 (reads never show one above it either)
read-your-writes       a ``min_version`` read that answers 200 has at least it
fresh                  a read at least ``B`` after a barrier is not older than it
                       (``resurrection`` when the barrier was a delete); a key
                       deleted in the cache alone (its origin keeps the row)
                       stays deleted until it is written again, its namespace
                       invalidated, or its region loses data
invalidated            no read ``B`` after an invalidation serves a version that
                       existed before it began (with the tag, for a tag)
lost-write             no 404 ``B`` after an acknowledged write when nothing
                       since could have removed it (a delete, an invalidation,
                       expiry, or a fault that loses data in its region or home)
durable-event          every acknowledged write and invalidation has its event on
                       the topic (with its version)
converged              after the run, once ``B`` passed, every region applied the
                       same version of every key and the same namespace metadata
no-server-error        no answer is a 5xx other than 502, 503 and 504
no-phantom             every value read was written, and a version names one value
=====================  ======================================================
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from libs.common.config import NamespaceConfig
from libs.common.homes import home_region
from libs.common.versions import MAX_VERSION
from tests.consistency.history import DbState, Fault, History, Op

INVARIANTS = (
    "version-order",
    "read-your-writes",
    "fresh",
    "invalidated",
    "lost-write",
    "durable-event",
    "converged",
    "no-server-error",
    "no-phantom",
)
# faults after which a region may have lost entries (lost-write excuses) or gone back to
# an older state for a while (fresh and invalidated count from their end): a snapshot's,
# or after a wipe what its relays still had to apply (an older value, with no record left
# of the versions and invalidations that came after it) until the next reconcile pass
_LOSES = ("redis_wipe", "redis_rollback", "memory_pressure")
_GOES_BACK = ("redis_rollback", "redis_wipe")
# faults after which a home has forgotten the versions it held: an external version it had
# seen may be taken again (versions it assigns itself still grow with its clock)
_FORGETS = ("redis_wipe", "redis_rollback")
# the home region applied a write before acknowledging it: its reads reflect it at once,
# but for a hot key's copy in a process (the near cache, bounded at 50 ms)
HOME_BOUND = 0.2


@dataclass
class Violation:
    invariant: str
    item: str
    message: str
    ops: list[int] = field(default_factory=list)
    window: tuple[float, float] = (0.0, 0.0)


@dataclass
class Verdict:
    checked: dict[str, int] = field(default_factory=lambda: dict.fromkeys(INVARIANTS, 0))
    violations: list[Violation] = field(default_factory=list)

    def add(self, violation: Violation) -> None:
        self.violations.append(violation)

    def by_invariant(self) -> dict[str, list[Violation]]:
        found: dict[str, list[Violation]] = {name: [] for name in INVARIANTS}
        for v in self.violations:
            found.setdefault(v.invariant, []).append(v)
        return found

    @property
    def ok(self) -> bool:
        return not self.violations


class _Context:
    """Indexes of one history the checks share."""

    def __init__(self, history: History) -> None:
        self.h = history
        self.by_id = {op.id: op for op in history.ops}
        self.by_item: dict[str, list[Op]] = defaultdict(list)
        self.invalidations: dict[str, list[Op]] = defaultdict(list)
        for op in history.ops:
            if op.key is not None:
                self.by_item[op.item].append(op)
            elif op.kind in ("inv_ns", "inv_tag"):
                self.invalidations[op.ns].append(op)
        for ops in self.by_item.values():
            ops.sort(key=lambda o: o.invoke)

    def spec(self, ns: str) -> dict[str, object]:
        return self.h.namespaces.get(ns, {})

    def origin(self, ns: str) -> bool:
        return bool(self.spec(ns).get("origin"))

    def record_versions(self, ns: str) -> bool:
        return bool(self.spec(ns).get("record_versions"))

    def home(self, ns: str, key: str | None) -> str:
        """The key's home (``None``: the namespace's own, where invalidations apply)."""
        home = str(self.spec(ns).get("home_region", self.h.regions[0]))
        cfg = NamespaceConfig(home_region=home)
        return home_region(cfg, self.h.regions, ns, key)

    def faults(self, kinds: Sequence[str], regions: Iterable[str | None]) -> list[Fault]:
        wanted = {r for r in regions if r}
        return [f for f in self.h.faults if f.kind in kinds and f.target in wanted]

    def settled(self, t: float, regions: Iterable[str | None], until: float) -> float:
        """When a barrier at ``t`` starts counting in ``regions``: after any restore from
        an old snapshot there that ended after ``t`` (and before ``until``, the read's
        completion: a restore takes effect before its end is recorded)."""
        ends = [f.end for f in self.faults(_GOES_BACK, regions) if t <= f.end <= until]
        return max([t, *ends])

    def wiped_after(self, op: Op, read: Op, home: str | None) -> bool:
        """Whether the key's home lost all its data after ``op`` began and before ``read``
        ended: what ``op`` acknowledged may be gone everywhere (its event too, when it was
        still in the home's outbox)."""
        return any(
            op.invoke <= f.end and f.start <= read.complete
            for f in self.faults(("redis_wipe",), (home,))
        )

    def lost_between(self, start: float, end: float, regions: Iterable[str | None]) -> bool:
        return any(f.start <= end and f.end >= start for f in self.faults(_LOSES, regions))


def check(history: History) -> Verdict:
    verdict = Verdict()
    ctx = _Context(history)
    _version_order(ctx, verdict)
    _read_your_writes(ctx, verdict)
    _fresh(ctx, verdict)
    _purged(ctx, verdict)
    _invalidated(ctx, verdict)
    _lost_writes(ctx, verdict)
    _durable_events(ctx, verdict)
    _converged(ctx, verdict)
    _server_errors(ctx, verdict)
    _phantoms(ctx, verdict)
    return verdict


def _acked_writes(ops: Iterable[Op]) -> list[Op]:
    return [
        op
        for op in ops
        if op.kind in ("put", "delete") and op.outcome == "ok" and op.version is not None
    ]


def _version_order(ctx: _Context, verdict: Verdict) -> None:
    for item, ops in ctx.by_item.items():
        writes = _acked_writes(ops)
        ns, key = ops[0].ns, ops[0].key
        assert key is not None
        home = ctx.home(ns, key)

        verdict.checked["version-order"] += len(writes)
        for op in ops:
            if op.version is not None and op.version > MAX_VERSION and op.kind != "sor_write":
                verdict.add(
                    Violation(
                        "version-order",
                        item,
                        f"#{op.id} {op.kind} has version {op.version}, above 2^53 - 1",
                        [op.id],
                        (op.invoke, op.complete),
                    )
                )
        owner: dict[int, Op] = {}
        for op in writes:
            assert op.version is not None
            first = owner.setdefault(op.version, op)
            if first is not op and not _forgotten(ctx, home, first, op):
                verdict.add(
                    Violation(
                        "version-order",
                        item,
                        f"#{first.id} and #{op.id} were both acknowledged with version "
                        f"{op.version}",
                        [first.id, op.id],
                        (first.invoke, op.complete),
                    )
                )
        by_complete = sorted(writes, key=lambda o: o.complete)
        completes = [o.complete for o in by_complete]
        # running maximum of the versions acknowledged by each completion time
        best: list[Op] = []
        for op in by_complete:
            assert op.version is not None
            if not best or op.version > (best[-1].version or 0):
                best.append(op)
            else:
                best.append(best[-1])
        for op in writes:
            before = bisect.bisect_left(completes, op.invoke)
            if before == 0:
                continue
            prior = best[before - 1]
            assert op.version is not None and prior.version is not None
            if op.version <= prior.version and not _forgotten(ctx, home, prior, op):
                verdict.add(
                    Violation(
                        "version-order",
                        item,
                        f"#{op.id} began after #{prior.id} was acknowledged with version "
                        f"{prior.version}, but got version {op.version}",
                        [prior.id, op.id],
                        (prior.invoke, op.complete),
                    )
                )


def _forgotten(ctx: _Context, home: str, first: Op, then: Op) -> bool:
    """Whether the home lost what it held between two writes, so that ``then`` may repeat
    or undercut ``first``'s version: when one of them carried an external version, or
    ``first``'s is above the home's clock at ``then`` (an external version set earlier).
    Versions the home assigns itself still grow with its clock (README, consistency)."""
    lost = any(
        first.invoke <= f.end and f.start <= then.complete for f in ctx.faults(_FORGETS, (home,))
    )
    external = "version" in first.params or "version" in then.params
    clock_us = (ctx.h.epoch0 + then.invoke) * 1_000_000
    return lost and (external or (first.version or 0) > clock_us)


def _reads(ops: Iterable[Op]) -> list[Op]:
    return [op for op in ops if op.kind == "get" and op.outcome == "ok"]


def _read_your_writes(ctx: _Context, verdict: Verdict) -> None:
    for item, ops in ctx.by_item.items():
        for op in _reads(ops):
            floor = op.params.get("min_version")
            if floor is None:
                continue
            verdict.checked["read-your-writes"] += 1
            if op.found and op.version is not None and op.version < int(floor):
                verdict.add(
                    Violation(
                        "read-your-writes",
                        item,
                        f"#{op.id} asked min_version={floor} and got version {op.version}",
                        [op.id],
                        (op.invoke, op.complete),
                    )
                )


@dataclass(frozen=True)
class _Barrier:
    """After ``at``, reads of the key must show at least ``floor``."""

    at: float
    floor: int
    op: Op
    # the floor is a deletion (a read showing something older resurrects it)
    delete: bool


def _state_at(states: list[DbState], t: float) -> int:
    """The index of the database state in force at time ``t``."""
    times = [s.time for s in states]
    return max(0, bisect.bisect_right(times, t) - 1)


def _barriers(ctx: _Context, ns: str, key: str, ops: list[Op]) -> list[_Barrier]:
    """Every barrier of a key, by the time it starts to count (before settling)."""
    found: list[_Barrier] = []
    origin = ctx.origin(ns)
    states = ctx.h.db.get(f"{ns}/{key}", [])
    for op in ops:
        if op.outcome != "ok":
            continue
        if op.kind in ("put", "delete", "sor_write", "sor_delete"):
            if origin:
                if op.db_state is None:
                    continue
                floor = op.db_state
                deleted = states[floor].value is None if floor < len(states) else False
            else:
                if op.version is None:
                    continue
                floor, deleted = op.version, op.kind == "delete"
            found.append(_Barrier(op.complete, floor, op, deleted))
    if origin:
        for inv in ctx.invalidations.get(ns, []):
            if inv.kind == "inv_ns" and inv.outcome == "ok" and states:
                floor = _state_at(states, inv.invoke)
                found.append(_Barrier(inv.complete, floor, inv, states[floor].value is None))
    found.sort(key=lambda b: b.at)
    return found


def _fresh(ctx: _Context, verdict: Verdict) -> None:
    bound = ctx.h.bound
    for item, ops in ctx.by_item.items():
        ns, key = ops[0].ns, ops[0].key
        assert key is not None
        barriers = _barriers(ctx, ns, key, ops)
        if not barriers:
            continue
        origin = ctx.origin(ns)
        states = ctx.h.db.get(item, [])
        home = ctx.home(ns, key)
        for read in _reads(ops):
            if not origin and not read.found:
                continue  # a 404 in a namespace without origin: lost-write's business
            verdict.checked["fresh"] += 1
            regions = (read.region, read.served_by, home)
            at_home = read.region == home
            due = [b for b in barriers if _due(ctx, b, read, regions, at_home, bound)]
            if not due:
                continue
            need = max(due, key=lambda b: b.floor)
            if origin:
                if not read.found and _purged_since(ops, need.op, read):
                    continue  # the cache's copy was deleted since: a 404 is the answer
                shown = _shown_state(states, read)
                if shown is None:
                    continue  # no-phantom reports it
            else:
                shown = read.version or 0
            if shown < need.floor:
                name = "resurrection" if need.delete else "stale read"
                verdict.add(
                    Violation(
                        "fresh",
                        item,
                        f"{name}: #{read.id} began {read.invoke - need.at:.1f} s after "
                        f"#{need.op.id} ({need.op.kind}) was acknowledged, but showed "
                        f"{_what(read)}, older than {_floor(ctx, item, need, origin)}",
                        [need.op.id, read.id],
                        (need.op.invoke, read.complete),
                    )
                )


def _due(
    ctx: _Context,
    barrier: _Barrier,
    read: Op,
    regions: tuple[str | None, ...],
    at_home: bool,
    bound: float,
) -> bool:
    """Whether ``read`` began late enough after ``barrier`` to have to reflect it: the
    home applied a write before acknowledging it, so its reads reflect it at once, unless
    it went back to an old snapshot since (then the reconciler has ``bound``)."""
    if ctx.wiped_after(barrier.op, read, regions[-1]):
        return False  # the home lost it (and maybe its event, queued in its outbox)
    settled = ctx.settled(barrier.at, regions, read.complete)
    direct = at_home and barrier.op.kind in ("put", "delete") and settled == barrier.at
    return settled + (HOME_BOUND if direct else bound) <= read.invoke


def _purged_since(ops: list[Op], barrier: Op, read: Op) -> bool:
    """Whether the cache's copy was deleted (alone) after ``barrier`` began, before ``read``."""
    return any(
        o.kind == "delete"
        and o.params.get("purge")
        and o.outcome != "fail"
        and o.complete > barrier.invoke
        and o.invoke < read.complete
        for o in ops
    )


def _purged(ctx: _Context, verdict: Verdict) -> None:
    """A delete of the cache's copy alone, in a namespace with an origin: the origin still
    has the row, and no fill may bring it back before the key is written again or the
    namespace invalidated (a region that loses data may fill it again)."""
    for item, ops in ctx.by_item.items():
        ns, key = ops[0].ns, ops[0].key
        assert key is not None
        purges = sorted(
            (o for o in ops if o.kind == "delete" and o.outcome == "ok" and o.params.get("purge")),
            key=lambda o: o.complete,
        )
        if not purges or not ctx.origin(ns):
            continue
        home = ctx.home(ns, key)
        invalidations = [i for i in ctx.invalidations.get(ns, []) if i.kind == "inv_ns"]
        for read in _reads(ops):
            if not read.found:
                continue
            regions = (read.region, read.served_by, home)
            bound = HOME_BOUND if read.region == home else ctx.h.bound
            due = [
                p
                for p in purges
                if ctx.settled(p.complete, regions, read.complete) + bound <= read.invoke
            ]
            if not due:
                continue
            purge = due[-1]
            verdict.checked["fresh"] += 1
            revived = any(
                o.kind in ("put", "delete", "sor_write", "sor_delete")
                and o is not purge
                and o.outcome != "fail"
                and o.complete > purge.invoke
                and o.invoke < read.complete
                for o in ops
            ) or any(
                i.outcome != "fail" and i.complete > purge.invoke and i.invoke < read.complete
                for i in invalidations
            )
            if revived or ctx.lost_between(purge.invoke, read.complete, regions):
                continue
            verdict.add(
                Violation(
                    "fresh",
                    item,
                    f"resurrection: #{read.id} began {read.invoke - purge.complete:.1f} s after "
                    f"#{purge.id} deleted the key (the cache's copy), and served "
                    f"{_what(read)}, filled again although nothing wrote it since",
                    [purge.id, read.id],
                    (purge.invoke, read.complete),
                )
            )


def _shown_state(states: list[DbState], read: Op) -> int | None:
    """The newest database state a read's answer can be (None: it never was one)."""
    if read.found:
        for state in states:
            if state.value == read.value:
                return state.index
        return None
    absent = [s.index for s in states if s.value is None and s.time <= read.complete]
    return max(absent) if absent else 0


def _what(read: Op) -> str:
    return f"{read.value} v{read.version}" if read.found else "404"


def _floor(ctx: _Context, item: str, barrier: _Barrier, origin: bool) -> str:
    if not origin:
        return f"version {barrier.floor}"
    states = ctx.h.db.get(item, [])
    shown = states[barrier.floor].value if barrier.floor < len(states) else None
    return f"database state #{barrier.floor} ({shown or 'no row'})"


def _invalidated(ctx: _Context, verdict: Verdict) -> None:
    """No read serves a version known before an acknowledged invalidation began."""
    bound = ctx.h.bound
    for item, ops in ctx.by_item.items():
        ns, key = ops[0].ns, ops[0].key
        assert key is not None
        if ctx.record_versions(ns):
            continue  # versions of a system of record may come back after a refill
        invs = sorted(
            (i for i in ctx.invalidations.get(ns, []) if i.outcome == "ok"),
            key=lambda o: o.invoke,
        )
        if not invs:
            continue
        # the tags of each version: those of the write that made it (an origin fill, or
        # a copy of one, has none; nor has a refill of a written value)
        tags_of: dict[int, tuple[str, ...]] = {
            op.version: op.tags
            for op in ops
            if op.kind == "put" and op.outcome == "ok" and op.version is not None
        }
        unsure = {
            op.value: op.tags
            for op in ops
            if op.kind == "put" and op.outcome == "info" and op.value is not None
        }
        known: dict[int, float] = {}
        for op in ops:
            if op.version is None or op.outcome != "ok":
                continue
            if op.kind == "put" or (op.kind == "get" and op.found):
                known[op.version] = min(known.get(op.version, op.complete), op.complete)
        home = ctx.home(ns, key)
        # the namespace's home bumps at once; elsewhere the bump travels as an event
        ns_home = None if ctx.spec(ns).get("home_region") == "hash" else home
        for read in _reads(ops):
            if not read.found or read.version is None:
                continue
            verdict.checked["invalidated"] += 1
            wait = HOME_BOUND if read.region == ns_home else bound
            since = known.get(read.version)
            if since is None:
                continue
            tags = tags_of.get(read.version)
            if tags is None:  # an unacknowledged write's version, if not an origin's
                tags = () if ctx.origin(ns) else unsure.get(read.value or "", ())
            for inv in invs:
                if inv.invoke <= since or inv.complete > read.invoke:
                    continue
                if inv.kind == "inv_tag" and inv.tag not in tags:
                    continue
                regions = (read.region, read.served_by, home)
                settled = ctx.settled(inv.complete, regions, read.complete)
                # after a restore from a snapshot the home too has the reconciler's bound
                limit = wait if settled == inv.complete else bound
                if settled + limit > read.invoke:
                    continue
                verdict.add(
                    Violation(
                        "invalidated",
                        item,
                        f"#{read.id} served v{read.version} (known since {since:.3f}) "
                        f"{read.invoke - inv.complete:.1f} s after #{inv.id} "
                        f"({inv.kind}{' ' + inv.tag if inv.tag else ''}) was acknowledged",
                        [inv.id, read.id],
                        (inv.invoke, read.complete),
                    )
                )
                break


def _lost_writes(ctx: _Context, verdict: Verdict) -> None:
    """A 404 where an acknowledged write must be: ``B`` after it anywhere, ``HOME_BOUND``
    after it in its home region (which applied it), at once for a read that asked for at
    least its version (read-your-writes)."""
    for item, ops in ctx.by_item.items():
        ns, key = ops[0].ns, ops[0].key
        assert key is not None
        if ctx.origin(ns):
            continue  # a miss fills from the origin: fresh covers it
        writes = sorted(_acked_writes(ops), key=lambda o: o.complete)
        if not writes:
            continue
        home = ctx.home(ns, key)
        completes = [w.complete for w in writes]
        for read in _reads(ops):
            if read.found:
                continue
            verdict.checked["lost-write"] += 1
            at_home = home in (read.region, read.served_by)
            bound = HOME_BOUND if at_home else ctx.h.bound
            at = bisect.bisect_right(completes, read.invoke - bound)
            candidates = writes[:at]
            floor = read.params.get("min_version")
            if floor is not None:
                candidates += [w for w in writes if w.version == floor and w.complete < read.invoke]
            if not candidates:
                continue
            write = max(candidates, key=lambda w: w.version or 0)
            if write.kind != "put" or _removed(ctx, ops, write, read, home):
                continue
            verdict.add(
                Violation(
                    "lost-write",
                    item,
                    f"#{read.id} answered 404 {read.invoke - write.complete:.1f} s after "
                    f"#{write.id} (put v{write.version}) was acknowledged, and nothing "
                    "since could have removed it",
                    [write.id, read.id],
                    (write.invoke, read.complete),
                )
            )


def _removed(ctx: _Context, ops: list[Op], write: Op, read: Op, home: str) -> bool:
    """Whether the key may rightly be absent at ``read`` although ``write`` was the newest
    write acknowledged ``B`` before it: a delete since, or an invalidation, expiry or data
    loss that removed ``write`` or a later write that may have replaced it."""
    later = [
        op
        for op in ops
        if op.kind in ("put", "delete")
        and op.outcome != "fail"
        and op is not write
        and op.complete > write.invoke
        and op.invoke < read.complete
        and (op.version is None or write.version is None or op.version > write.version)
    ]
    if any(op.kind == "delete" for op in later):
        return True
    regions = (read.region, read.served_by, home)
    return any(_gone(ctx, candidate, read, regions) for candidate in [write, *later])


def _gone(ctx: _Context, write: Op, read: Op, regions: tuple[str | None, ...]) -> bool:
    """Whether an invalidation, expiry or data loss may have removed ``write`` by ``read``."""
    for inv in ctx.invalidations.get(write.ns, []):
        if inv.outcome == "fail" or inv.invoke >= read.complete:
            continue
        if inv.kind == "inv_tag" and inv.tag not in write.tags:
            continue
        if inv.complete > write.invoke:  # not finished before the write began
            return True
    if write.expires_at is not None and ctx.h.epoch0 + read.invoke >= write.expires_at:
        return True
    return ctx.lost_between(write.invoke, read.complete, regions)


def _durable_events(ctx: _Context, verdict: Verdict) -> None:
    """Every acknowledged change's event on the topic, unless its home lost its data
    (with its outbox) before the event left it."""
    seen_keys = {(e.ns, e.key, e.version) for e in ctx.h.events if e.type == "key"}
    seen_ns = {(e.ns, e.version) for e in ctx.h.events if e.type == "namespace"}
    seen_tags = {(e.ns, e.tag, e.version) for e in ctx.h.events if e.type == "tag"}
    if not ctx.h.events:
        return
    for op in ctx.h.ops:
        if op.outcome != "ok" or op.version is None:
            continue
        if op.kind in ("put", "delete"):
            found = (op.ns, op.key, op.version) in seen_keys
        elif op.kind == "inv_ns":
            found = (op.ns, op.version) in seen_ns
        elif op.kind == "inv_tag":
            found = (op.ns, op.tag, op.version) in seen_tags
        else:
            continue
        verdict.checked["durable-event"] += 1
        lost = ctx.faults(_FORGETS, (ctx.home(op.ns, op.key),))
        if not found and any(f.end >= op.invoke for f in lost):
            continue  # queued in an outbox that was lost with its Redis
        if not found:
            verdict.add(
                Violation(
                    "durable-event",
                    op.item,
                    f"#{op.id} ({op.kind} v{op.version}) was acknowledged but its event "
                    "never reached the topic",
                    [op.id],
                    (op.invoke, op.complete),
                )
            )


def _converged(ctx: _Context, verdict: Verdict) -> None:
    applied, metas = ctx.h.applied, ctx.h.metas
    if not applied:
        return
    regions = sorted(applied)
    every_ns = set().union(*(applied[r].keys() for r in regions))
    for ns in sorted(every_ns):
        names = set().union(*(applied[r].get(ns, {}).keys() for r in regions))
        for key in sorted(names):
            verdict.checked["converged"] += 1
            versions = {r: applied[r].get(ns, {}).get(key, 0) for r in regions}
            if len(set(versions.values())) > 1:
                verdict.add(
                    Violation(
                        "converged",
                        f"{ns}/{key}",
                        f"applied versions differ {ctx.h.bound:.1f} s after the run: {versions}",
                        [],
                        (ctx.h.faults_end, ctx.h.end),
                    )
                )
    every_meta_ns = set().union(*(metas.get(r, {}).keys() for r in regions))
    for ns in sorted(every_meta_ns):
        fields = set().union(*(metas.get(r, {}).get(ns, {}).keys() for r in regions))
        for name in sorted(fields):
            verdict.checked["converged"] += 1
            values = {r: metas.get(r, {}).get(ns, {}).get(name, 0) for r in regions}
            if len(set(values.values())) > 1:
                verdict.add(
                    Violation(
                        "converged",
                        ns,
                        f"namespace metadata {name} differs after the run: {values}",
                        [],
                        (ctx.h.faults_end, ctx.h.end),
                    )
                )


def _server_errors(ctx: _Context, verdict: Verdict) -> None:
    for op in ctx.h.ops:
        if op.status is None:
            continue
        verdict.checked["no-server-error"] += 1
        if op.status >= 500 and op.status not in (502, 503, 504):
            verdict.add(
                Violation(
                    "no-server-error",
                    op.item,
                    f"#{op.id} ({op.kind}) answered {op.status}: {op.error}",
                    [op.id],
                    (op.invoke, op.complete),
                )
            )


def _phantoms(ctx: _Context, verdict: Verdict) -> None:
    for item, ops in ctx.by_item.items():
        ns = ops[0].ns
        origin = ctx.origin(ns)
        written = {op.value: op for op in ops if op.kind == "put" and op.value is not None}
        states = {s.value for s in ctx.h.db.get(item, []) if s.value is not None}
        # the value each version names: acknowledged writes say it first
        names: dict[int, Op] = {
            op.version: op
            for op in reversed(ops)
            if op.kind == "put" and op.outcome == "ok" and op.version is not None
        }
        for read in _reads(ops):
            if not read.found:
                continue
            verdict.checked["no-phantom"] += 1
            if read.value not in (states if origin else written):
                verdict.add(
                    Violation(
                        "no-phantom",
                        item,
                        f"#{read.id} read {read.value!r}, which was never written",
                        [read.id],
                        (read.invoke, read.complete),
                    )
                )
                continue
            if read.version is None or ctx.record_versions(ns):
                continue
            first = names.setdefault(read.version, read)
            if first.value != read.value:
                verdict.add(
                    Violation(
                        "no-phantom",
                        item,
                        f"version {read.version} named {first.value!r} (#{first.id}) and "
                        f"{read.value!r} (#{read.id})",
                        [first.id, read.id],
                        (first.invoke, read.complete),
                    )
                )


# -- reporting ------------------------------------------------------------------


def minimal_history(history: History, violation: Violation, limit: int = 40) -> str:
    """The part of the history a violation needs: the operations on its item (and the
    invalidations of its namespace) in its window, the faults then, the database's
    states of the key; the operations it names always."""
    start, end = violation.window
    ns = violation.item.split("/", 1)[0]
    named = set(violation.ops)
    lines: list[tuple[float, str]] = []
    for op in history.ops:
        on_item = op.item == violation.item and op.complete >= start
        # invalidations just before the window may be what the violation is about
        on_ns = op.key is None and op.ns == ns and op.complete >= start - history.bound
        if op.id in named or ((on_item or on_ns) and op.invoke <= end):
            mark = "*" if op.id in named else " "
            lines.append((op.invoke, mark + op.describe()))
    if len(lines) > limit:
        keep = [line for line in lines if line[1].startswith("*")]
        rest = [line for line in lines if not line[1].startswith("*")]
        lines = sorted(keep + rest[-(limit - len(keep)) :])
    for fault in history.faults:
        if fault.start <= end and fault.end >= start - history.bound:
            lines.append((fault.start, " " + fault.describe()))
    for state in history.db.get(violation.item, []):
        if start - 1 <= state.time <= end:
            lines.append(
                (
                    state.time,
                    f" {state.time:9.3f}            db#{state.index} := "
                    f"{state.value or 'no row'} (row v{state.row_version})",
                )
            )
    lines.sort(key=lambda pair: pair[0])
    head = f"  {'invoke':>9} {'complete':>9}  (* = named by the violation)"
    return "\n".join([head, *(" " + text for _, text in lines)])


def report(history: History, verdict: Verdict, *, per_namespace: int = 1) -> str:
    """The invariant table (violations per namespace), then for each invariant and
    namespace the first violations with their minimal histories."""
    rows = [f"{'invariant':<18} {'checked':>9} {'violations':>10}  by namespace"]
    found = verdict.by_invariant()
    for name in INVARIANTS:
        spread: dict[str, int] = {}
        for v in found[name]:
            spread[v.item.split("/", 1)[0]] = spread.get(v.item.split("/", 1)[0], 0) + 1
        where = " ".join(f"{ns}:{n}" for ns, n in sorted(spread.items()))
        rows.append(
            f"{name:<18} {verdict.checked.get(name, 0):>9} {len(found[name]):>10}  {where}".rstrip()
        )
    out = ["\n".join(rows)]
    for name in INVARIANTS:
        shown: dict[str, int] = {}
        for violation in found[name]:
            ns = violation.item.split("/", 1)[0]
            if shown.get(ns, 0) >= per_namespace:
                continue
            shown[ns] = shown.get(ns, 0) + 1
            out.append(f"\n{name} violated on {violation.item}: {violation.message}")
            out.append(minimal_history(history, violation))
    return "\n".join(out)
