"""Debezium change-event envelopes mapped to events.md key events.

A :class:`DebeziumMapping` names, per Debezium topic, the namespace, a key
template filled from the row (``"{id}"``, ``"{tenant}:{id}"``) and where the
version comes from: a row column, or ``source.<field>`` of the envelope
(``source.lsn`` for PostgreSQL, also ``source.ts_us`` ...).

Usage::

    mapping = DebeziumMapping(topic="pg.public.users", ns="users", key="{id}",
                              version="source.lsn")
    event = to_event(mapping, record.value)   # None: nothing to invalidate
    if event is not None:
        await publisher.publish(event)

Rules that matter for correctness:

* ``op`` ``c``/``u``/``r`` become ``set`` of the key of ``after``; ``d`` becomes
  ``delete`` of the key of ``before``. ``t`` (truncate) and Kafka tombstones
  (``value is None``, emitted after every delete) carry nothing to invalidate
  by key and return ``None``.
* Versions must increase per key (versions.py). ``source.lsn`` does: two
  writes of one row are serialised by its row lock, so the later one has the
  larger LSN, deletes included. A version *column* of a delete's ``before``
  image holds the version of the last write, which the platform already knows,
  so a delete takes that value ``+ 1`` (otherwise it would be ignored as not
  newer). ``before`` has the non-key columns only with ``REPLICA IDENTITY
  FULL``; without it a column version is missing and the delete is invalid.
* Every malformed input raises :class:`InvalidEvent`, never anything else, so
  a consumer counts it and moves it to the dead-letter topic.
"""

from __future__ import annotations

import dataclasses
import string
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, PrivateAttr, field_validator

from libs.common.errors import InvalidEvent, MrcacheError
from libs.common.events import Event, KeyOp, key_event, now_ms
from libs.common.naming import check_key, check_namespace
from libs.common.versions import MAX_VERSION

__all__ = ["DebeziumMapping", "to_event"]

_SOURCE_PREFIX = "source."
_SETS = ("c", "u", "r")
_TRUNCATE = "t"
_DELETE = "d"
# A version has at most 16 decimal digits (MAX_VERSION); longer strings are
# rejected before int() so a huge digit string costs nothing.
_MAX_VERSION_DIGITS = len(str(MAX_VERSION))


def _parse_template(template: str) -> list[tuple[str, str | None]]:
    """``"{tenant}:{id}"`` → ``[("", "tenant"), (":", "id")]``; ValueError if not allowed."""
    if not template:
        raise ValueError("key template must not be empty")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"key template {template!r} is not a valid format string: {exc}") from None
    parts: list[tuple[str, str | None]] = []
    for literal, field, spec, conversion in parsed:
        if field is None:
            parts.append((literal, None))
            continue
        if field == "" or field.isdigit():
            raise ValueError(f"key template {template!r}: fields must be named, like {{id}}")
        if "." in field or "[" in field:
            raise ValueError(
                f"key template {template!r}: field {field!r} uses attribute or index access; "
                "only plain column names are allowed"
            )
        # Values are str()-ed first, so a spec would only pad strings: refuse it.
        if spec or conversion:
            raise ValueError(
                f"key template {template!r}: field {field!r} has a conversion or format spec; "
                "only plain {column} fields are allowed"
            )
        parts.append((literal, field))
    return parts


class DebeziumMapping(BaseModel):
    """How the rows of one Debezium topic map to mrcache keys and versions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str
    ns: str
    key: str
    version: str
    origin: str = "debezium"

    _parts: list[tuple[str, str | None]] = PrivateAttr(default_factory=list)

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        if not value:
            raise ValueError("topic must not be empty")
        return value

    @field_validator("ns")
    @classmethod
    def _ns(cls, value: str) -> str:
        try:
            return check_namespace(value)
        except MrcacheError as exc:  # pydantic reports ValueError only
            raise ValueError(exc.message) from None

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        _parse_template(value)
        return value

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not value or value == _SOURCE_PREFIX:
            raise ValueError("version must be a column name or source.<field>, like source.lsn")
        return value

    @field_validator("origin")
    @classmethod
    def _origin(cls, value: str) -> str:
        # events.md decoders accept origins of 1..128 characters
        if not 0 < len(value) <= 128:
            raise ValueError("origin must be 1 to 128 characters")
        return value

    def model_post_init(self, context: Any, /) -> None:
        self._parts = _parse_template(self.key)

    @property
    def fields(self) -> tuple[str, ...]:
        """The row columns the key template reads."""
        return tuple(field for _, field in self._parts if field is not None)

    def render_key(self, row: dict[str, Any]) -> str:
        """Fill the key template from a row; :class:`InvalidEvent` if a field is unusable."""
        out: list[str] = []
        for literal, field in self._parts:
            out.append(literal)
            if field is None:
                continue
            if field not in row or row[field] is None:
                raise InvalidEvent(f"row has no value for key field {field!r} of {self.key!r}")
            value = row[field]
            if isinstance(value, dict | list):
                raise InvalidEvent(f"key field {field!r} is not a scalar")
            out.append(str(value))
        try:
            return check_key("".join(out))
        except MrcacheError as exc:
            raise InvalidEvent(f"key from {self.key!r}: {exc.message}") from None


def to_event(mapping: DebeziumMapping, value: bytes | None) -> Event | None:
    """Map one Debezium message value to a key event, or ``None`` if it has none.

    Accepts the JSON converter's envelope with schema (``{"schema", "payload"}``)
    and without (``before``/``after``/``source``/``op`` at top level). Raises
    :class:`InvalidEvent`, and nothing else, for anything malformed.
    """
    if value is None:
        return None  # the tombstone Debezium writes after a delete, for compaction
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidEvent("Debezium message must be a JSON object")
    if "op" not in body and "payload" in body:
        body = body["payload"]
        if body is None:
            return None  # a tombstone written by a converter with schemas enabled
        if not isinstance(body, dict):
            raise InvalidEvent("Debezium payload must be a JSON object")

    op = body.get("op")
    if not isinstance(op, str) or op not in (*_SETS, _DELETE, _TRUNCATE):
        raise InvalidEvent(f"Debezium op must be one of c, u, r, d, t; got {_shown(op)}")
    if op == _TRUNCATE:
        return None  # a whole table: no key to invalidate

    image = "before" if op == _DELETE else "after"
    row = body.get(image)
    if not isinstance(row, dict):
        raise InvalidEvent(f"Debezium op {op!r} needs an object in {image!r}, got {_shown(row)}")

    key = mapping.render_key(row)
    version = _version(mapping, body, row, delete=op == _DELETE)
    event_op: KeyOp = "delete" if op == _DELETE else "set"
    event = key_event(mapping.ns, key, version, event_op, origin=mapping.origin)
    ts_ms = body.get("ts_ms")
    if not isinstance(ts_ms, int) or isinstance(ts_ms, bool) or not 0 <= ts_ms <= MAX_VERSION:
        ts_ms = now_ms()
    return dataclasses.replace(event, ts_ms=ts_ms)


def _version(
    mapping: DebeziumMapping, body: dict[str, Any], row: dict[str, Any], *, delete: bool
) -> int:
    name = mapping.version
    if name.startswith(_SOURCE_PREFIX):
        source = body.get("source")
        if not isinstance(source, dict):
            raise InvalidEvent(f"version {name!r}: the message has no source object")
        return _as_version(source.get(name[len(_SOURCE_PREFIX) :]), name)
    if name not in row:
        hint = " (deletes carry it only with REPLICA IDENTITY FULL)" if delete else ""
        raise InvalidEvent(f"version column {name!r} is missing from the row{hint}")
    version = _as_version(row[name], f"version column {name!r}")
    if delete:
        # before holds the last write's version, already known: the delete is one later
        version += 1
        if version > MAX_VERSION:
            raise InvalidEvent(f"version column {name!r} of a delete is already at the maximum")
    return version


def _as_version(raw: Any, what: str) -> int:
    """An int in [1, MAX_VERSION], given as a JSON integer or a string of digits."""
    if isinstance(raw, str):
        if not raw.isascii() or not raw.isdigit() or len(raw) > _MAX_VERSION_DIGITS:
            raise InvalidEvent(f"{what} must be a positive integer, got {_shown(raw)}")
        raw = int(raw)
    if not isinstance(raw, int) or isinstance(raw, bool):
        raise InvalidEvent(f"{what} must be a positive integer, got {_shown(raw)}")
    if not 1 <= raw <= MAX_VERSION:
        raise InvalidEvent(f"{what} must be between 1 and {MAX_VERSION}, got {raw}")
    return raw


def _shown(value: Any, limit: int = 80) -> str:
    """A short description of untrusted input for an error message."""
    if isinstance(value, str):
        return repr(value if len(value) <= limit else value[:limit] + "...")
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    # containers may be large or deeply nested: name the type only
    return f"a JSON {'object' if isinstance(value, dict) else 'array'}"
