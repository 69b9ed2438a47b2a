"""Debezium envelopes → key events, with messages shaped like the PostgreSQL connector's.

The envelopes follow the Debezium PostgreSQL connector documentation
(``customers`` table, JSON converter with and without ``schemas.enable``).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from libs.common import events
from libs.common.debezium import DebeziumMapping, to_event
from libs.common.errors import InvalidEvent
from libs.common.versions import MAX_VERSION

LSN = 24023128
TS_MS = 1559033904863

_ROW_FIELDS = [
    {"type": "int32", "optional": False, "default": 0, "field": "id"},
    {"type": "string", "optional": False, "field": "first_name"},
    {"type": "string", "optional": False, "field": "last_name"},
    {"type": "string", "optional": False, "field": "email"},
    {"type": "int64", "optional": False, "field": "row_version"},
]

SCHEMA: dict[str, Any] = {
    "type": "struct",
    "fields": [
        {
            "type": "struct",
            "fields": _ROW_FIELDS,
            "optional": True,
            "name": "PostgreSQL_server.inventory.customers.Value",
            "field": "before",
        },
        {
            "type": "struct",
            "fields": _ROW_FIELDS,
            "optional": True,
            "name": "PostgreSQL_server.inventory.customers.Value",
            "field": "after",
        },
        {
            "type": "struct",
            "fields": [
                {"type": "string", "optional": False, "field": "version"},
                {"type": "string", "optional": False, "field": "connector"},
                {"type": "string", "optional": False, "field": "name"},
                {"type": "int64", "optional": False, "field": "ts_ms"},
                {
                    "type": "string",
                    "optional": True,
                    "name": "io.debezium.data.Enum",
                    "version": 1,
                    "parameters": {"allowed": "true,last,false,incremental"},
                    "default": "false",
                    "field": "snapshot",
                },
                {"type": "string", "optional": False, "field": "db"},
                {"type": "string", "optional": True, "field": "sequence"},
                {"type": "int64", "optional": True, "field": "ts_us"},
                {"type": "int64", "optional": True, "field": "ts_ns"},
                {"type": "string", "optional": False, "field": "schema"},
                {"type": "string", "optional": False, "field": "table"},
                {"type": "int64", "optional": True, "field": "txId"},
                {"type": "int64", "optional": True, "field": "lsn"},
                {"type": "int64", "optional": True, "field": "xmin"},
            ],
            "optional": False,
            "name": "io.debezium.connector.postgresql.Source",
            "field": "source",
        },
        {"type": "string", "optional": False, "field": "op"},
        {"type": "int64", "optional": True, "field": "ts_ms"},
        {"type": "int64", "optional": True, "field": "ts_us"},
        {"type": "int64", "optional": True, "field": "ts_ns"},
        {
            "type": "struct",
            "fields": [
                {"type": "string", "optional": False, "field": "id"},
                {"type": "int64", "optional": False, "field": "total_order"},
                {"type": "int64", "optional": False, "field": "data_collection_order"},
            ],
            "optional": True,
            "name": "event.block",
            "version": 1,
            "field": "transaction",
        },
    ],
    "optional": False,
    "name": "PostgreSQL_server.inventory.customers.Envelope",
    "version": 2,
}

ANNE = {
    "id": 1,
    "first_name": "Anne",
    "last_name": "Kretchmar",
    "email": "annek@noanswer.org",
    "row_version": 7,
}


def source(*, lsn: int = LSN, snapshot: str = "false", tx: int = 555) -> dict[str, Any]:
    return {
        "version": "2.7.3.Final",
        "connector": "postgresql",
        "name": "PostgreSQL_server",
        "ts_ms": TS_MS - 4,
        "snapshot": snapshot,
        "db": "postgres",
        "sequence": f'["{lsn - 9}","{lsn}"]',
        "ts_us": (TS_MS - 4) * 1000,
        "ts_ns": (TS_MS - 4) * 1_000_000,
        "schema": "public",
        "table": "customers",
        "txId": tx,
        "lsn": lsn,
        "xmin": None,
    }


def payload(
    op: str,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    src: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "before": before,
        "after": after,
        "source": src if src is not None else source(),
        "op": op,
        "ts_ms": TS_MS,
        "ts_us": TS_MS * 1000,
        "ts_ns": TS_MS * 1_000_000,
        "transaction": None,
    }


def with_schema(body: dict[str, Any]) -> bytes:
    """The JSON converter with ``schemas.enable=true`` (its default)."""
    return orjson.dumps({"schema": SCHEMA, "payload": body})


def schemaless(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body)


BY_LSN = DebeziumMapping(
    topic="PostgreSQL_server.public.customers", ns="customers", key="{id}", version="source.lsn"
)
BY_COLUMN = DebeziumMapping(
    topic="PostgreSQL_server.public.customers",
    ns="customers",
    key="c:{id}:{email}",
    version="row_version",
    origin="pg-main",
)


def mapped(mapping: DebeziumMapping, value: bytes | None) -> events.Event:
    event = to_event(mapping, value)
    assert event is not None
    return event


# -- create, update, delete, read ---------------------------------------------------


def test_create_is_a_set_of_the_after_row() -> None:
    event = mapped(BY_LSN, with_schema(payload("c", after=ANNE)))
    assert event.type == "key"
    assert (event.ns, event.key, event.op, event.version) == ("customers", "1", "set", LSN)
    assert event.origin == "debezium"
    assert event.ts_ms == TS_MS
    assert event.kafka_key == b"customers/1"
    assert event.value_b64 is None
    assert event.id


def test_the_event_survives_the_events_md_codec() -> None:
    event = mapped(BY_COLUMN, with_schema(payload("c", after=ANNE)))
    assert events.decode(events.encode(event)) == event


def test_update_uses_after_and_a_later_lsn() -> None:
    updated = {**ANNE, "email": "noreply@example.com", "row_version": 8}
    body = payload("u", before=None, after=updated, src=source(lsn=LSN + 200, tx=556))
    body["transaction"] = {"id": "556:24023328", "total_order": 1, "data_collection_order": 1}
    event = mapped(BY_LSN, with_schema(body))
    assert (event.key, event.op, event.version) == ("1", "set", LSN + 200)
    by_column = mapped(BY_COLUMN, with_schema(body))
    assert by_column.key == "c:1:noreply@example.com"
    assert by_column.version == 8
    assert by_column.origin == "pg-main"


def test_delete_uses_before_with_replica_identity_default() -> None:
    # REPLICA IDENTITY DEFAULT: before carries the primary key columns only
    body = payload("d", before={"id": 1}, after=None, src=source(lsn=LSN + 400, tx=557))
    event = mapped(BY_LSN, with_schema(body))
    assert (event.key, event.op, event.version) == ("1", "delete", LSN + 400)


def test_delete_with_a_version_column_is_one_after_the_last_write() -> None:
    # REPLICA IDENTITY FULL: before is the whole row, its version the last write's
    event = mapped(BY_COLUMN, with_schema(payload("d", before=ANNE, after=None)))
    assert (event.key, event.op, event.version) == ("c:1:annek@noanswer.org", "delete", 8)
    last_write = mapped(BY_COLUMN, with_schema(payload("u", after=ANNE)))
    assert event.version > last_write.version


def test_delete_without_the_version_column_names_the_fix() -> None:
    mapping = DebeziumMapping(**{**BY_COLUMN.model_dump(), "key": "{id}"})
    with pytest.raises(InvalidEvent, match="REPLICA IDENTITY FULL"):
        to_event(mapping, with_schema(payload("d", before={"id": 1}, after=None)))


def test_snapshot_read_is_a_set() -> None:
    body = payload("r", after=ANNE, src=source(snapshot="true"))
    event = mapped(BY_LSN, with_schema(body))
    assert (event.key, event.op, event.version) == ("1", "set", LSN)
    last = payload("r", after={**ANNE, "id": 2}, src=source(snapshot="last"))
    assert mapped(BY_LSN, with_schema(last)).key == "2"


# -- nothing to invalidate ----------------------------------------------------------


def test_kafka_tombstone_after_a_delete_is_none() -> None:
    assert to_event(BY_LSN, None) is None


def test_null_payload_with_schema_is_a_tombstone() -> None:
    assert to_event(BY_LSN, orjson.dumps({"schema": None, "payload": None})) is None


def test_truncate_is_none() -> None:
    body = {"source": source(), "op": "t", "ts_ms": TS_MS, "transaction": None}
    assert to_event(BY_LSN, with_schema(body)) is None
    assert to_event(BY_LSN, schemaless({**body, "before": None, "after": None})) is None


# -- envelope variants -----------------------------------------------------------------


def test_schemaless_envelope() -> None:
    event = mapped(BY_LSN, schemaless(payload("c", after=ANNE)))
    assert (event.key, event.op, event.version, event.ts_ms) == ("1", "set", LSN, TS_MS)
    deleted = mapped(BY_LSN, schemaless(payload("d", before={"id": 1})))
    assert deleted.op == "delete"


def test_row_with_a_payload_column_is_not_mistaken_for_the_envelope() -> None:
    row = {**ANNE, "payload": {"x": 1}}
    assert mapped(BY_LSN, schemaless(payload("c", after=row))).key == "1"


def test_other_source_fields_as_version() -> None:
    mapping = DebeziumMapping(topic="t", ns="customers", key="{id}", version="source.ts_us")
    assert mapped(mapping, schemaless(payload("c", after=ANNE))).version == (TS_MS - 4) * 1000
    by_ms = DebeziumMapping(topic="t", ns="customers", key="{id}", version="source.ts_ms")
    assert mapped(by_ms, schemaless(payload("c", after=ANNE))).version == TS_MS - 4
    # nanoseconds since the epoch exceed 2**53 - 1
    by_ns = DebeziumMapping(topic="t", ns="customers", key="{id}", version="source.ts_ns")
    with pytest.raises(InvalidEvent, match="between 1 and"):
        to_event(by_ns, schemaless(payload("c", after=ANNE)))


def test_numeric_strings_are_versions() -> None:
    row = {**ANNE, "row_version": "42"}
    assert mapped(BY_COLUMN, schemaless(payload("u", after=row))).version == 42
    src = {**source(), "lsn": str(LSN)}
    assert mapped(BY_LSN, schemaless(payload("u", after=ANNE, src=src))).version == LSN


@pytest.mark.parametrize(
    "bad",
    [True, False, 1.5, 7.0, 0, -3, "0", "-3", "1e3", " 7", "", "x", MAX_VERSION + 1, None, [7], {}],
)
def test_bad_versions_are_invalid(bad: object) -> None:
    row = {**ANNE, "row_version": bad}
    with pytest.raises(InvalidEvent, match="row_version"):
        to_event(BY_COLUMN, schemaless(payload("c", after=row)))
    src = {**source(), "lsn": bad}
    with pytest.raises(InvalidEvent, match=r"source\.lsn"):
        to_event(BY_LSN, schemaless(payload("c", after=ANNE, src=src)))


def test_missing_version_is_invalid() -> None:
    row = {k: v for k, v in ANNE.items() if k != "row_version"}
    with pytest.raises(InvalidEvent, match="row_version"):
        to_event(BY_COLUMN, schemaless(payload("c", after=row)))
    body = payload("c", after=ANNE)
    del body["source"]
    with pytest.raises(InvalidEvent, match="no source"):
        to_event(BY_LSN, schemaless(body))


def test_max_version_is_accepted_and_a_delete_cannot_go_beyond_it() -> None:
    row = {**ANNE, "row_version": MAX_VERSION}
    assert mapped(BY_COLUMN, schemaless(payload("c", after=row))).version == MAX_VERSION
    with pytest.raises(InvalidEvent, match="maximum"):
        to_event(BY_COLUMN, schemaless(payload("d", before=row)))


@pytest.mark.parametrize("ts_ms", [None, "1559033904863", 1.5, True, -1])
def test_ts_ms_falls_back_to_now(ts_ms: object) -> None:
    body = {**payload("c", after=ANNE), "ts_ms": ts_ms}
    before = events.now_ms()
    event = mapped(BY_LSN, schemaless(body))
    assert before <= event.ts_ms <= events.now_ms()


# -- key templates ---------------------------------------------------------------------


def test_key_template_fills_several_fields_with_str() -> None:
    mapping = DebeziumMapping(topic="t", ns="orders", key="{tenant}/{id}:{{x}}", version="v")
    row = {"tenant": "acme", "id": 12, "v": 3}
    assert mapped(mapping, schemaless(payload("c", after=row))).key == "acme/12:{x}"
    assert mapping.fields == ("tenant", "id")


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ({"v": 3}, "no value for key field 'id'"),
        ({"id": None, "v": 3}, "no value for key field 'id'"),
        ({"id": {"a": 1}, "v": 3}, "not a scalar"),
        ({"id": [1], "v": 3}, "not a scalar"),
        ({"id": "a\nb", "v": 3}, "control characters"),
        ({"id": "x" * 600, "v": 3}, "at most 512"),
    ],
)
def test_unusable_key_fields_are_invalid(row: dict[str, Any], match: str) -> None:
    mapping = DebeziumMapping(topic="t", ns="orders", key="{id}", version="v")
    with pytest.raises(InvalidEvent, match=match):
        to_event(mapping, schemaless(payload("c", after=row)))


@pytest.mark.parametrize(
    "template", ["", "{}", "{0}", "{id.x}", "{id[0]}", "{id!r}", "{id:>8}", "{id", "id}"]
)
def test_malformed_key_templates_are_refused(template: str) -> None:
    with pytest.raises(ValidationError, match="key"):
        DebeziumMapping(topic="t", ns="orders", key=template, version="v")


def test_mapping_validation() -> None:
    with pytest.raises(ValidationError, match="namespace"):
        DebeziumMapping(topic="t", ns="Bad NS", key="{id}", version="v")
    with pytest.raises(ValidationError, match="source"):
        DebeziumMapping(topic="t", ns="ok", key="{id}", version="source.")
    with pytest.raises(ValidationError, match="version"):
        DebeziumMapping(topic="t", ns="ok", key="{id}", version="")
    with pytest.raises(ValidationError, match="topic"):
        DebeziumMapping(topic="", ns="ok", key="{id}", version="v")
    with pytest.raises(ValidationError, match="origin"):
        DebeziumMapping(topic="t", ns="ok", key="{id}", version="v", origin="")
    with pytest.raises(ValidationError, match="extra"):
        DebeziumMapping(topic="t", ns="ok", key="{id}", version="v", table="x")  # type: ignore[call-arg]


# -- malformed messages ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (b"", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"c"', "JSON object"),
        (b"null", "JSON object"),
        (b'{"payload": 5}', "payload must be"),
        (b"{}", "op must be"),
        (b'{"op": "x", "after": {"id": 1}}', "op must be"),
        (b'{"op": ["c"], "after": {"id": 1}}', "op must be"),
        (b'{"op": "c", "before": {"id": 1}}', "'after'"),
        (b'{"op": "u", "after": null}', "'after'"),
        (b'{"op": "d", "before": null, "after": null}', "'before'"),
        (b'{"op": "r", "after": [1]}', "'after'"),
    ],
)
def test_malformed_messages_are_invalid(value: bytes, match: str) -> None:
    with pytest.raises(InvalidEvent, match=match):
        to_event(BY_LSN, value)


# -- nothing but InvalidEvent, for any input --------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_names = st.sampled_from(["id", "email", "row_version", "payload", "lsn", "op"]) | st.text(
    max_size=6
)
_rows = st.none() | _json | st.dictionaries(_names, _json, max_size=5)
_envelopes = st.fixed_dictionaries(
    {},
    optional={
        "op": st.sampled_from(["c", "u", "d", "r", "t", "m"]) | _json,
        "before": _rows,
        "after": _rows,
        "source": st.none() | _json | st.dictionaries(_names, _json, max_size=4),
        "ts_ms": _json,
        "payload": _json,
    },
)
_MAPPINGS = [
    BY_LSN,
    BY_COLUMN,
    DebeziumMapping(topic="t", ns="ns", key="{id}", version="id"),
    DebeziumMapping(topic="t", ns="ns", key="k:{payload}", version="source.lsn"),
]


def _check(value: bytes | None) -> None:
    for mapping in _MAPPINGS:
        try:
            event = to_event(mapping, value)
        except InvalidEvent:
            continue
        if event is not None:
            assert event.type == "key" and event.op in ("set", "delete")
            assert 1 <= event.version <= MAX_VERSION
            assert events.decode(events.encode(event)) == event


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=256))
def test_arbitrary_bytes_never_raise_anything_else(value: bytes) -> None:
    _check(value)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(max_size=10), _json, max_size=6))
def test_arbitrary_json_objects_never_raise_anything_else(body: dict[str, Any]) -> None:
    _check(orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_envelopes, st.booleans())
def test_envelope_shaped_json_never_raises_anything_else(
    body: dict[str, Any], wrapped: bool
) -> None:
    _check(with_schema(body) if wrapped else schemaless(body))


def test_deeply_nested_json_is_invalid_not_a_crash() -> None:
    deep = b"[" * 5000 + b"]" * 5000
    with pytest.raises(InvalidEvent):
        to_event(BY_LSN, deep)
    deep_row = b'{"op": "c", "after": {"id": ' + b"[" * 1000 + b"]" * 1000 + b"}}"
    with pytest.raises(InvalidEvent):
        to_event(BY_LSN, deep_row)
