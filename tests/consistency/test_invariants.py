"""The checker checked: hand-made histories with and without each violation."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from tests.consistency.history import DbState, Event, Fault, History, Op
from tests.consistency.invariants import check, minimal_history, report

REGIONS = ("us-east", "eu-west", "ap-south")
SPACES: dict[str, dict[str, Any]] = {
    "hs": {"home_region": "us-east", "origin": False, "record_versions": False},
    "fx": {"home_region": "us-east", "origin": True, "record_versions": False},
    "sr": {"home_region": "us-east", "origin": True, "record_versions": True},
}
_ids = itertools.count(1)


def history(*ops: Op, bound: float = 1.0, **extra: Any) -> History:
    h = History(seed=1, regions=REGIONS, namespaces=SPACES, bound=bound)
    h.ops = list(ops)
    for name, value in extra.items():
        setattr(h, name, value)
    return h


def op(kind: str, at: float, done: float | None = None, **fields: Any) -> Op:
    fields.setdefault("ns", "hs")
    if kind not in ("inv_ns", "inv_tag"):
        fields.setdefault("key", "k")
    fields.setdefault("outcome", "ok")
    fields.setdefault("region", "us-east")
    return Op(
        id=next(_ids),
        client=0,
        kind=kind,
        invoke=at,
        complete=at + 0.01 if done is None else done,
        **fields,
    )


def put(at: float, value: str, version: int, **fields: Any) -> Op:
    return op("put", at, value=value, version=version, **fields)


def get(
    at: float,
    value: str | None,
    version: int | None = None,
    done: float | None = None,
    **fields: Any,
) -> Op:
    """A read, by default in eu-west (not the home of the test namespaces)."""
    fields.setdefault("region", "eu-west")
    return op("get", at, done, value=value, version=version, found=value is not None, **fields)


def violations(h: History) -> list[str]:
    return [v.invariant for v in check(h).violations]


def test_a_clean_history_passes() -> None:
    h = history(put(0, "a", 10), get(2, "a", 10), put(3, "b", 11), get(5, "b", 11))
    verdict = check(h)
    assert verdict.ok, report(h, verdict)
    assert verdict.checked["fresh"] == 2


def test_version_order_catches_a_version_going_back_repeating_or_overflowing() -> None:
    assert violations(history(put(0, "a", 10), put(1, "b", 9))) == ["version-order"]
    assert "version-order" in violations(history(put(0, "a", 10), put(1, "b", 10)))
    assert violations(history(put(0, "a", 2**53))) == ["version-order"]
    # concurrent writes may land in either order
    slow = op("put", 0, 2, value="a", version=10)
    assert violations(history(slow, put(1, "b", 9))) == []


def test_read_your_writes() -> None:
    h = history(put(0, "a", 10), get(0.1, "a", 9, params={"min_version": 10}))
    assert "read-your-writes" in violations(h)


def test_a_stale_read_after_the_bound_is_caught_and_within_it_is_not() -> None:
    assert violations(history(put(0, "a", 10), put(1, "b", 11), get(1.5, "a", 10))) == []
    assert violations(history(put(0, "a", 10), put(1, "b", 11), get(2.5, "a", 10))) == ["fresh"]
    # the home region applied the write before acknowledging it: no bound there
    at_home = get(1.5, "a", 10, region="us-east")
    assert violations(history(put(0, "a", 10), put(1, "b", 11), at_home)) == ["fresh"]


def test_a_delete_then_an_older_value_is_a_resurrection() -> None:
    h = history(put(0, "a", 10), op("delete", 1, version=11), get(3, "a", 10))
    [v] = check(h).violations
    assert v.invariant == "fresh" and "resurrection" in v.message


def test_a_region_restored_from_a_snapshot_counts_from_the_restore() -> None:
    ops = (put(0, "a", 10), put(1, "b", 11), get(2.5, "a", 10, region="eu-west"))
    assert violations(history(*ops)) == ["fresh"]
    rollback = Fault("redis_rollback", "eu-west", 1.5, 2.0)
    assert violations(history(*ops, faults=[rollback])) == []


def test_origin_namespaces_are_judged_by_the_database_state() -> None:
    db = {
        "fx/k": [
            DbState(0, None, 0, 0),
            DbState(1, "a", 0.0, 1),
            DbState(2, "b", 1.0, 2),
        ]
    }
    ops = [put(0, "a", 10, ns="fx", db_state=1), put(1, "b", 11, ns="fx", db_state=2)]
    assert violations(history(*ops, get(3, "b", 12, ns="fx"), db=db)) == []
    assert violations(history(*ops, get(3, "a", 10, ns="fx"), db=db)) == ["fresh"]
    assert violations(history(*ops, get(3, None, ns="fx"), db=db)) == ["fresh"]


def test_a_namespace_invalidation_in_an_origin_namespace_demands_the_database_state() -> None:
    db = {"fx/k": [DbState(0, None, 0, 0), DbState(1, "a", 0.5, 1)]}
    inv = op("inv_ns", 1, ns="fx", version=5)
    # the row was written to the database only; a cached 404 must not survive the invalidation
    assert violations(history(get(0.2, None, ns="fx"), inv, get(3, None, ns="fx"), db=db)) == [
        "fresh"
    ]
    assert violations(history(inv, get(3, "a", 7, ns="fx"), db=db)) == []


def test_invalidations_void_versions_known_before_them() -> None:
    seen = [put(0, "a", 10, tags=("t",)), get(0.5, "a", 10)]
    inv_ns = op("inv_ns", 1, version=20)
    assert violations(history(*seen, inv_ns, get(3, "a", 10))) == ["invalidated"]
    assert violations(history(*seen, inv_ns, get(1.5, "a", 10))) == []  # within the bound
    home = get(1.5, "a", 10, region="us-east")  # the namespace's home bumped at once
    assert violations(history(*seen, inv_ns, home)) == ["invalidated"]
    other_tag = op("inv_tag", 1, tag="u", version=20)
    assert violations(history(*seen, other_tag, get(3, "a", 10))) == []
    tag = op("inv_tag", 1, tag="t", version=20)
    assert violations(history(*seen, tag, get(3, "a", 10))) == ["invalidated"]


def test_a_write_acknowledged_after_an_invalidation_must_survive_it() -> None:
    inv = op("inv_ns", 0, 0.1, version=20)
    assert violations(history(inv, put(0.2, "a", 30), get(3, None))) == ["lost-write"]
    # an invalidation that had not finished when the write began may remove it
    overlapping = op("inv_ns", 0, 0.3, version=20)
    assert violations(history(overlapping, put(0.2, "a", 30), get(3, None))) == []


def test_a_404_is_excused_by_a_delete_a_later_removed_write_or_lost_data() -> None:
    assert violations(history(put(0, "a", 10), get(3, None))) == ["lost-write"]
    assert violations(history(put(0, "a", 10), get(0.5, None))) == []
    # at the home, and for a read of one's own write, at once
    assert violations(history(put(0, "a", 10), get(0.5, None, region="us-east"))) == ["lost-write"]
    own = get(0.1, None, params={"min_version": 10})
    assert violations(history(put(0, "a", 10), own)) == ["lost-write"]
    assert violations(history(put(0, "a", 10), op("delete", 2, outcome="info"), get(3, None))) == []
    later = put(2, "b", 11, tags=("t",))
    tag = op("inv_tag", 2.5, tag="t", version=30)
    assert violations(history(put(0, "a", 10), later, tag, get(3, None))) == []
    wipe = Fault("redis_wipe", "eu-west", 1, 1)
    assert violations(history(put(0, "a", 10), get(3, None, region="eu-west"), faults=[wipe])) == []


def test_acknowledged_writes_need_their_events() -> None:
    events = [Event("key", "hs", 10, key="k", op="set")]
    assert violations(history(put(0, "a", 10), events=events)) == []
    assert violations(history(put(0, "a", 10), put(1, "b", 11), events=events)) == ["durable-event"]


def test_convergence_compares_every_region() -> None:
    same = {r: {"hs": {"k": 5}} for r in REGIONS}
    assert violations(history(applied=same, metas={})) == []
    behind = {**same, "eu-west": {"hs": {"k": 4}}}
    assert violations(history(applied=behind, metas={})) == ["converged"]
    metas = {r: {"hs": {"gen": 7 if r != "ap-south" else 6}} for r in REGIONS}
    assert violations(history(applied=same, metas=metas)) == ["converged"]


def test_server_errors_and_phantoms() -> None:
    assert violations(history(op("get", 0, status=500, outcome="info"))) == ["no-server-error"]
    assert violations(history(op("get", 0, status=503, outcome="info"))) == []
    assert violations(history(get(0, "never written", 3))) == ["no-phantom"]
    unknown = op("put", 0, value="a", outcome="info")
    twice = history(unknown, put(0, "b", 11), get(1, "a", 11))
    assert "no-phantom" in violations(twice)


def test_the_minimal_history_names_the_operations_and_the_history_round_trips(
    tmp_path: Path,
) -> None:
    h = history(put(0, "a", 10), put(1, "b", 11), get(2.5, "a", 10))
    [v] = check(h).violations
    text = minimal_history(h, v)
    assert text.count("*") >= 3 and "put hs/k := b" in text
    path = tmp_path / "history.json"
    h.save(path)
    again = History.load(path)
    assert [o.describe() for o in again.ops] == [o.describe() for o in h.ops]
    assert violations(again) == ["fresh"]


@pytest.mark.parametrize("ns", ["sr"])
def test_versions_of_a_system_of_record_may_come_back_after_an_invalidation(ns: str) -> None:
    db = {f"{ns}/k": [DbState(0, None, 0, 0), DbState(1, "a", 0.0, 1)]}
    ops = [
        op("sor_write", 0, ns=ns, value="a", version=1, db_state=1),
        get(0.5, "a", 1, ns=ns),
        op("inv_ns", 1, ns=ns, version=9),
        get(3, "a", 1, ns=ns),
    ]
    assert violations(history(*ops, db=db)) == []


def test_an_external_version_repeats_only_after_the_home_forgot_it() -> None:
    first = put(0, "a", 9, params={"version": 9})
    again = put(5, "b", 9, params={"version": 9})
    assert "version-order" in violations(history(first, again))
    wipe = Fault("redis_wipe", "us-east", 2, 2.1)  # the home (us-east) lost its data
    assert violations(history(first, again, faults=[wipe])) == []
    elsewhere = Fault("redis_wipe", "eu-west", 2, 2.1)
    assert "version-order" in violations(history(first, again, faults=[elsewhere]))


def test_a_restore_counts_from_when_it_took_effect_not_when_it_was_recorded() -> None:
    # the restore ended (took effect) while the read was in flight: the read may show it
    rollback = Fault("redis_rollback", "eu-west", 0.5, 2.55)
    ops = (put(0, "a", 10), put(1, "b", 11), get(2.5, "a", 10, done=2.6))
    assert violations(history(*ops, faults=[rollback])) == []


def test_a_key_deleted_in_the_cache_alone_stays_deleted_until_written_again() -> None:
    db = {"fx/k": [DbState(0, None, 0, 0), DbState(1, "a", 0.0, 1)]}
    written = put(0, "a", 10, ns="fx", db_state=1)
    purge = op("delete", 1, ns="fx", version=11, params={"purge": True})
    # the origin still has "a": a 404 is the answer, a fill of "a" is a resurrection
    assert violations(history(written, purge, get(3, None, ns="fx"), db=db)) == []
    [v] = check(history(written, purge, get(3, "a", 12, ns="fx"), db=db)).violations
    assert v.invariant == "fresh" and "resurrection" in v.message
    # written again, or the namespace invalidated: it may be filled again
    again = put(2, "a", 13, ns="fx", db_state=1)
    assert violations(history(written, purge, again, get(3, "a", 13, ns="fx"), db=db)) == []
    inv = op("inv_ns", 2, ns="fx", version=50)
    assert violations(history(written, purge, inv, get(3, "a", 51, ns="fx"), db=db)) == []
