"""What the checker records: operations, faults, the system of record's states, events.

Times are seconds since the run started, on the checker's monotonic clock: every
client, the database and the fault injector run in the checker's one process, so
their times compare exactly. An operation's interval [invoke, complete] contains
the moment it took effect, if it took effect (a linearization point).

Outcomes follow Jepsen: ``ok`` (acknowledged, or a definite read), ``fail``
(definitely not applied: a 4xx refusal) and ``info`` (indeterminate: a timeout or
a 5xx, after which the operation may or may not have taken effect).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Outcome = Literal["ok", "fail", "info"]

# operation kinds: writes through the API, reads, namespace-wide invalidations, and the
# system of record's own writes (database only, or database then a change event)
WRITES = ("put", "delete")
READS = ("get",)
INVALIDATIONS = ("inv_ns", "inv_tag")
RECORD_WRITES = ("db_write", "db_delete", "sor_write", "sor_delete")


@dataclass
class Op:
    id: int
    client: int
    kind: str
    ns: str
    key: str | None = None
    tag: str | None = None
    # the region the request was sent to (writes may be forwarded to the home)
    region: str | None = None
    invoke: float = 0.0
    complete: float = 0.0
    outcome: Outcome = "info"
    status: int | None = None
    # writes: the value written (unique per write, so a read names the write it saw)
    value: str | None = None
    tags: tuple[str, ...] = ()
    # the version an acknowledged write got, a read returned, or a change event carried
    version: int | None = None
    # request conditions: min_version, if_match, if_none_match, external version
    params: dict[str, Any] = field(default_factory=dict)
    # reads: what was served
    found: bool | None = None
    cache: str | None = None
    served_by: str | None = None
    # database writes (and cache-aside writes, which write the database first): the index
    # of the state they created in the key's database history
    db_state: int | None = None
    # a response's expiry (PUT: expires_at), for the lost-write excuse of expired entries
    expires_at: float | None = None
    # a read that was part of a batchGet
    via: str | None = None
    error: str | None = None

    @property
    def item(self) -> str:
        return f"{self.ns}/{self.key}" if self.key is not None else self.ns

    def describe(self) -> str:
        """One line of a printed history."""
        what = self.kind
        if self.key is not None:
            what += f" {self.ns}/{self.key}"
        elif self.tag is not None:
            what += f" {self.ns} tag {self.tag}"
        else:
            what += f" {self.ns}"
        if self.value is not None and self.kind not in READS:
            what += f" := {self.value}"
        if self.tags:
            what += f" tags={','.join(self.tags)}"
        if self.params:
            what += " " + " ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        result: str = self.outcome
        if self.status is not None:
            result += f" {self.status}"
        if self.kind in READS and self.found:
            result += f" {self.value} v{self.version} {self.cache or ''}".rstrip()
        elif self.version is not None:
            result += f" v{self.version}"
        if self.db_state is not None:
            result += f" db#{self.db_state}"
        if self.error:
            result += f" ({self.error})"
        where = f"@{self.region}" if self.region else ""
        if self.served_by and self.served_by != self.region:
            where += f"->{self.served_by}"
        return (
            f"{self.invoke:9.3f} {self.complete:9.3f}  c{self.client:<3d} #{self.id:<6d} "
            f"{what} {where} -> {result}"
        )


@dataclass
class Fault:
    kind: str
    # the region (or "broker", "origin") it hits
    target: str
    start: float
    end: float
    params: dict[str, Any] = field(default_factory=dict)

    # faults that lose data in the target region: an entry can be gone after them
    LOSSY = ("redis_wipe", "redis_rollback", "memory_pressure", "redis_restart")

    def describe(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return (
            f"{self.start:9.3f} {self.end:9.3f}  FAULT {self.kind} {self.target} {extra}".rstrip()
        )


@dataclass
class DbState:
    """One state of a key in the system of record: its value (None: no row) from ``time``."""

    index: int
    value: str | None
    time: float
    row_version: int


@dataclass
class Event:
    """An event seen on the topic: key events with their key, invalidations with their tag."""

    type: str
    ns: str
    version: int
    key: str | None = None
    tag: str | None = None
    op: str | None = None


@dataclass
class History:
    seed: int
    regions: tuple[str, ...]
    # namespace -> its settings as the checker uses them (home, origin, versions ...)
    namespaces: dict[str, dict[str, Any]]
    ops: list[Op] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    # "ns/key" -> the database's states of the key, in order
    db: dict[str, list[DbState]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    # the freshness bound the reads are checked against, and when faults ended
    bound: float = 5.0
    faults_end: float = 0.0
    end: float = 0.0
    # the wall clock (epoch seconds) at time 0, to compare with expires_at
    epoch0: float = 0.0
    # region -> ns -> key -> applied version, and region -> ns -> meta field -> value,
    # read after the run once the bound passed (convergence)
    applied: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    metas: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    # supervisor restarts per process that the faults did not cause, and server errors
    notes: list[str] = field(default_factory=list)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self)), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> History:
        data = json.loads(path.read_text(encoding="utf-8"))
        history = cls(
            seed=data["seed"], regions=tuple(data["regions"]), namespaces=data["namespaces"]
        )
        history.ops = [Op(**{**o, "tags": tuple(o["tags"])}) for o in data["ops"]]
        history.faults = [Fault(**f) for f in data["faults"]]
        history.db = {k: [DbState(**s) for s in v] for k, v in data["db"].items()}
        history.events = [Event(**e) for e in data["events"]]
        for name in ("bound", "faults_end", "end", "epoch0", "applied", "metas", "notes"):
            setattr(history, name, data[name])
        return history
