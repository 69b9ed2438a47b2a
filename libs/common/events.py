"""The invalidation event of events.md: model, strict validation, orjson codec.

Decoding is strict about what the format defines (types, names, ranges) and
ignores unknown fields so the format can grow. Anything that fails raises
:class:`InvalidEvent` with a reason; consumers count it, log it and move the
message to the dead-letter topic, never stop on it.
"""

from __future__ import annotations

import base64
import binascii
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from libs.common.errors import InvalidEvent, MrcacheError
from libs.common.naming import (
    MAX_CONTENT_TYPE,
    MAX_TAGS,
    check_content_type,
    check_key,
    check_namespace,
    check_tag,
)
from libs.common.versions import MAX_VERSION

FORMAT_VERSION = 1
EventType = Literal["key", "namespace", "tag"]
KeyOp = Literal["set", "delete"]
_TYPES = ("key", "namespace", "tag")
_OPS = ("set", "delete")


@dataclass(frozen=True, slots=True)
class Limits:
    """What a replicated value may be: the API's limits (api.md, "Names and limits"), so
    an event never installs what a PUT would refuse. Consumers pass their settings."""

    max_value_bytes: int = 1024 * 1024
    max_ttl: float = 30 * 24 * 3600.0


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    ns: str
    version: int
    origin: str
    ts_ms: int
    id: str
    key: str | None = None
    tag: str | None = None
    op: KeyOp | None = None
    value_b64: str | None = None
    content_type: str | None = None
    ttl: float | None = None
    # mrcache's own additions (events.md lets the format grow): the stamps a replicated
    # value was written under, so a namespace or tag invalidation that overtook this
    # event in another partition still voids the installed copy; for a delete, the
    # generation it was made under, so a later namespace invalidation voids it too
    gen: int | None = None
    tags: tuple[str, ...] | None = None
    tag_versions: tuple[int, ...] | None = None

    @property
    def kafka_key(self) -> bytes:
        """``{ns}/{key}`` for key events so one key's events share a partition; else ``{ns}``."""
        if self.type == "key":
            return f"{self.ns}/{self.key}".encode()
        return self.ns.encode()

    def value(self) -> bytes | None:
        return None if self.value_b64 is None else base64.b64decode(self.value_b64)


def new_event_id() -> str:
    return uuid.uuid4().hex


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def key_event(
    ns: str,
    key: str,
    version: int,
    op: KeyOp,
    *,
    origin: str,
    value: bytes | None = None,
    content_type: str | None = None,
    ttl: float | None = None,
    gen: int | None = None,
    tags: tuple[str, ...] = (),
    tag_versions: tuple[int, ...] = (),
) -> Event:
    carries = value is not None
    # a set names its tags (with its stamps) even without a value, so whoever follows the
    # topic (the meter) knows which keys a tag invalidation is about
    stamped = carries or bool(tags)
    return Event(
        type="key",
        ns=ns,
        key=key,
        version=version,
        op=op,
        origin=origin,
        ts_ms=now_ms(),
        id=new_event_id(),
        value_b64=base64.b64encode(value).decode("ascii") if value is not None else None,
        content_type=(content_type or "application/octet-stream") if carries else None,
        ttl=ttl if carries else None,
        gen=gen if stamped or op == "delete" else None,
        tags=tags if stamped else None,
        tag_versions=tag_versions if stamped else None,
    )


def namespace_event(ns: str, generation: int, *, origin: str) -> Event:
    return Event(
        type="namespace",
        ns=ns,
        version=generation,
        origin=origin,
        ts_ms=now_ms(),
        id=new_event_id(),
    )


def tag_event(ns: str, tag: str, version: int, *, origin: str) -> Event:
    return Event(
        type="tag",
        ns=ns,
        tag=tag,
        version=version,
        origin=origin,
        ts_ms=now_ms(),
        id=new_event_id(),
    )


def encode(event: Event) -> bytes:
    body: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "type": event.type,
        "ns": event.ns,
        "version": event.version,
        "origin": event.origin,
        "ts_ms": event.ts_ms,
        "id": event.id,
    }
    for name in (
        "key",
        "tag",
        "op",
        "value_b64",
        "content_type",
        "ttl",
        "gen",
        "tags",
        "tag_versions",
    ):
        value = getattr(event, name)
        if value is not None:
            body[name] = value
    return orjson.dumps(body)


def decode(raw: bytes | None, limits: Limits = DEFAULT_LIMITS) -> Event:
    """Parse and validate one message value; raises :class:`InvalidEvent`.

    A replicated value must keep the API's ``limits`` (size, TTL) and content-type
    rule, so an event installs nothing a PUT would refuse."""
    if raw is None:
        raise InvalidEvent("message has no value")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidEvent("event must be a JSON object")
    try:
        return _from_dict(body, limits)
    except InvalidEvent:
        raise
    except MrcacheError as exc:  # a naming rule of api.md
        raise InvalidEvent(exc.message) from None


def _from_dict(body: dict[str, Any], limits: Limits) -> Event:
    if body.get("v") != FORMAT_VERSION or isinstance(body.get("v"), bool):
        raise InvalidEvent(f"unsupported format version {body.get('v')!r}, expected 1")
    etype = body.get("type")
    if etype not in _TYPES:
        raise InvalidEvent(f"type must be one of {_TYPES}, got {etype!r}")
    ns = check_namespace(_str(body, "ns"))
    version = _int(body, "version", low=1, high=MAX_VERSION)
    origin = _str(body, "origin", limit=128)
    ts_ms = _int(body, "ts_ms", low=0, high=MAX_VERSION)
    event_id = _str(body, "id", limit=128)
    key = tag = op = value_b64 = content_type = None
    ttl: float | None = None
    stamps: tuple[int | None, tuple[str, ...] | None, tuple[int, ...] | None] = (None, None, None)
    if etype == "key":
        key = check_key(_str(body, "key"))
        op = body.get("op")
        if op not in _OPS:
            raise InvalidEvent(f"op must be one of {_OPS}, got {op!r}")
        if body.get("value_b64") is not None:
            value_b64 = body["value_b64"]
            if not isinstance(value_b64, str):  # empty is fine: an empty value
                raise InvalidEvent("value_b64 must be a string")
            # base64 carries 3 bytes in 4 characters: refuse a long one before decoding it
            if len(value_b64) > 4 * (limits.max_value_bytes // 3 + 1):
                raise InvalidEvent(f"the value exceeds {limits.max_value_bytes} bytes")
            try:
                value = base64.b64decode(value_b64, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidEvent("value_b64 is not valid base64") from None
            if len(value) > limits.max_value_bytes:
                raise InvalidEvent(
                    f"the value is {len(value)} bytes, at most {limits.max_value_bytes} allowed"
                )
            content_type = (
                check_content_type(_str(body, "content_type", limit=MAX_CONTENT_TYPE))
                if body.get("content_type") is not None
                else "application/octet-stream"
            )
            if body.get("ttl") is not None:
                ttl = _float(body, "ttl")
                if ttl > limits.max_ttl:
                    raise InvalidEvent(f"ttl must be at most {limits.max_ttl:g} seconds")
            stamps = _stamps(body)
        elif op == "delete" and body.get("gen") is not None:
            stamps = (_int(body, "gen", low=0, high=MAX_VERSION), None, None)
    elif etype == "tag":
        tag = check_tag(_str(body, "tag"))
    return Event(
        type=etype,
        ns=ns,
        version=version,
        origin=origin,
        ts_ms=ts_ms,
        id=event_id,
        key=key,
        tag=tag,
        op=op,
        value_b64=value_b64,
        content_type=content_type,
        ttl=ttl,
        gen=stamps[0],
        tags=stamps[1],
        tag_versions=stamps[2],
    )


def _stamps(
    body: dict[str, Any],
) -> tuple[int | None, tuple[str, ...] | None, tuple[int, ...] | None]:
    """The optional stamps of a replicated value; all or nothing, tags aligned with versions."""
    if body.get("gen") is None:
        return None, None, None
    gen = _int(body, "gen", low=0, high=MAX_VERSION)
    tags, versions = body.get("tags", []), body.get("tag_versions", [])
    if not isinstance(tags, list) or not isinstance(versions, list) or len(tags) != len(versions):
        raise InvalidEvent("tags and tag_versions must be lists of the same length")
    if len(tags) > MAX_TAGS:
        raise InvalidEvent(f"at most {MAX_TAGS} tags")
    for tag in tags:
        if not isinstance(tag, str):
            raise InvalidEvent("tags must be strings")
        check_tag(tag)
    for v in versions:
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_VERSION:
            raise InvalidEvent("tag_versions must be integers")
    return gen, tuple(tags), tuple(versions)


def _str(body: dict[str, Any], name: str, *, limit: int | None = 1024) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidEvent(f"{name} must be a non-empty string")
    if limit is not None and len(value) > limit:
        raise InvalidEvent(f"{name} is longer than {limit} characters")
    return value


def _int(body: dict[str, Any], name: str, *, low: int, high: int) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidEvent(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return value


def _float(body: dict[str, Any], name: str) -> float:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidEvent(f"{name} must be a number")
    if not math.isfinite(value) or value <= 0:
        raise InvalidEvent(f"{name} must be positive")
    return float(value)
