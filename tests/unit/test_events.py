from __future__ import annotations

import base64

import orjson
import pytest

from libs.common import events
from libs.common.errors import InvalidEvent


def test_key_event_round_trip_and_kafka_key() -> None:
    ev = events.key_event("products", "p/1", 17, "set", origin="us-east")
    decoded = events.decode(events.encode(ev))
    assert decoded == ev
    assert ev.kafka_key == b"products/p/1"
    body = orjson.loads(events.encode(ev))
    assert body["v"] == 1 and body["type"] == "key" and body["op"] == "set"
    assert "value_b64" not in body


def test_replicated_value_travels() -> None:
    ev = events.key_event(
        "ns",
        "k",
        3,
        "set",
        origin="eu-west",
        value=b"\x00\xff",
        content_type="application/x",
        ttl=30.0,
    )
    decoded = events.decode(events.encode(ev))
    assert decoded.value() == b"\x00\xff"
    assert decoded.content_type == "application/x"
    assert decoded.ttl == 30.0


def test_namespace_and_tag_events_key_by_namespace() -> None:
    ns_ev = events.namespace_event("ns", 5, origin="us-east")
    tag_ev = events.tag_event("ns", "red", 6, origin="us-east")
    assert ns_ev.kafka_key == tag_ev.kafka_key == b"ns"
    assert events.decode(events.encode(tag_ev)).tag == "red"


def test_unknown_fields_are_ignored() -> None:
    body = orjson.loads(events.encode(events.namespace_event("ns", 5, origin="x")))
    body["future_field"] = {"anything": [1, 2]}
    assert events.decode(orjson.dumps(body)).version == 5


def _valid() -> dict[str, object]:
    return {
        "v": 1,
        "type": "key",
        "ns": "ns",
        "key": "k",
        "version": 9,
        "op": "delete",
        "origin": "sor",
        "ts_ms": 1,
        "id": "abc",
    }


@pytest.mark.parametrize(
    "change",
    [
        {"v": 2},
        {"v": True},
        {"type": "row"},
        {"ns": "Bad NS"},
        {"ns": None},
        {"key": ""},
        {"key": "a\x00"},
        {"version": 0},
        {"version": -1},
        {"version": "9"},
        {"version": 1.5},
        {"version": True},
        {"version": 2**60},
        {"op": "upsert"},
        {"origin": ""},
        {"ts_ms": -1},
        {"id": 5},
        {"value_b64": "***"},
        {"value_b64": base64.b64encode(b"x").decode(), "ttl": -1},
        # what a PUT would refuse, an event may not install (the API's limits)
        {"value_b64": base64.b64encode(b"x").decode(), "ttl": 1e300},
        {"value_b64": base64.b64encode(b"x").decode(), "ttl": 30 * 24 * 3600 + 1},
        {"value_b64": base64.b64encode(b"x").decode(), "content_type": "text/plain\r\nX-A: b"},
        {"value_b64": base64.b64encode(b"x").decode(), "content_type": "text/plain; é"},
        {"value_b64": base64.b64encode(b"x" * (1024 * 1024 + 1)).decode()},
        {"value_b64": "A" * (2 * 1024 * 1024)},
        {"op": "delete", "gen": -1},
    ],
)
def test_invalid_events_raise(change: dict[str, object]) -> None:
    body = {**_valid(), **change}
    with pytest.raises(InvalidEvent):
        events.decode(orjson.dumps(body))


@pytest.mark.parametrize("raw", [None, b"", b"not json", b"[1,2]", b"\xff\xfe", b"null", b"1"])
def test_garbage_is_an_invalid_event(raw: bytes | None) -> None:
    with pytest.raises(InvalidEvent):
        events.decode(raw)


def test_tag_event_needs_a_valid_tag() -> None:
    body = {**_valid(), "type": "tag", "tag": "Nope!"}
    with pytest.raises(InvalidEvent):
        events.decode(orjson.dumps(body))


def test_replicated_stamps_round_trip() -> None:
    ev = events.key_event(
        "ns",
        "k",
        3,
        "set",
        origin="us-east",
        value=b"v",
        ttl=5.0,
        gen=7,
        tags=("a", "b"),
        tag_versions=(1, 2),
    )
    decoded = events.decode(events.encode(ev))
    assert decoded == ev
    body = orjson.loads(events.encode(ev))
    body["tag_versions"] = [1]
    with pytest.raises(InvalidEvent):
        events.decode(orjson.dumps(body))


def test_limits_are_the_consumers_and_at_the_limit_an_event_passes() -> None:
    value = base64.b64encode(b"x" * 100).decode()
    body = {**_valid(), "value_b64": value, "ttl": 60}
    assert events.decode(orjson.dumps(body)).ttl == 60
    tight = events.Limits(max_value_bytes=99, max_ttl=59)
    with pytest.raises(InvalidEvent, match="100 bytes"):
        events.decode(orjson.dumps(body), tight)
    with pytest.raises(InvalidEvent, match="ttl"):
        events.decode(orjson.dumps(body), events.Limits(max_ttl=59))


def test_a_delete_carries_the_generation_it_was_made_under() -> None:
    ev = events.key_event("ns", "k", 3, "delete", origin="us-east", gen=11)
    assert events.decode(events.encode(ev)).gen == 11
    plain = events.key_event("ns", "k", 3, "delete", origin="sor")
    assert events.decode(events.encode(plain)).gen is None
    # a set without a value carries no stamps
    assert events.key_event("ns", "k", 3, "set", origin="us-east", gen=11).gen is None
