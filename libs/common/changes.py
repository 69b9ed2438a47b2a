"""Publishing change events from a system of record (events.md, "Change events").

An application that writes a database keeps the caches fresh by publishing a
``type=key`` event after each commit, with its own version of the row: a row
version, a commit timestamp in microseconds or a log sequence number. Versions
of one key must increase (versions.py); an event whose version is not newer
than what a region holds changes nothing there.

Publishing waits for the broker's acknowledgement (``acks=all``) and raises
when it does not come within ``settings.publish_timeout``: the application must
know that its invalidation did not go out (and retry, or fail the request).
A timed-out event may still reach the broker later; events are idempotent by
version, so retrying it is harmless.

Usage::

    async with ChangePublisher(KafkaSettings(bootstrap="kafka:9092"), origin="orders-db") as pub:
        await db.commit()
        await pub.publish_change("orders", f"order:{order.id}", order.row_version, "set")

or, for one event (opens and closes a producer each time)::

    await publish_change(settings, "orders", "order:17", 42, "delete", origin="orders-db")
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Literal

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from libs.common import events
from libs.common.errors import EventsUnavailable, InvalidKey, InvalidNamespace, InvalidVersion
from libs.common.events import Event
from libs.common.kafka import make_producer
from libs.common.lifecycle import AsyncService
from libs.common.naming import check_key, check_namespace
from libs.common.settings import KafkaSettings
from libs.common.versions import MAX_VERSION

__all__ = ["ChangePublisher", "publish_change"]

log = logging.getLogger(__name__)

_OPS = ("set", "delete")
_MAX_ORIGIN = 128  # what events.md decoders accept


def _check_change(ns: object, key: object, version: object, op: object) -> None:
    """Raise the api.md error of the first invalid argument."""
    if not isinstance(ns, str):
        raise InvalidNamespace(f"namespace must be a string, got {type(ns).__name__}")
    check_namespace(ns)
    if not isinstance(key, str):
        raise InvalidKey(f"key must be a string, got {type(key).__name__}")
    check_key(key)
    if not isinstance(version, int) or isinstance(version, bool):
        raise InvalidVersion(f"version must be an integer, got {type(version).__name__}")
    if not 1 <= version <= MAX_VERSION:
        raise InvalidVersion(f"version must be between 1 and {MAX_VERSION}, got {version}")
    if op not in _OPS:
        raise ValueError(f"op must be 'set' or 'delete', got {op!r}")


class ChangePublisher(AsyncService):
    """A Kafka producer of key events for one system of record.

    ``start()`` connects (bounded by ``settings.publish_timeout``), ``stop()``
    flushes and closes; ``async with`` does both.
    """

    def __init__(self, settings: KafkaSettings, *, origin: str) -> None:
        if not isinstance(origin, str) or not 0 < len(origin) <= _MAX_ORIGIN:
            raise ValueError(f"origin must be 1 to {_MAX_ORIGIN} characters")
        self.settings = settings
        self.origin = origin
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        if self._producer is not None:
            return
        producer = make_producer(self.settings)
        try:
            await asyncio.wait_for(producer.start(), self.settings.publish_timeout)
        except BaseException as exc:
            # a half-started producer still owns sockets and tasks
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), self.settings.publish_timeout)
            if isinstance(exc, KafkaError | OSError | TimeoutError):
                raise EventsUnavailable(
                    f"kafka at {self.settings.bootstrap} unreachable: {exc!r}"
                ) from exc
            raise
        self._producer = producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                await asyncio.wait_for(producer.stop(), self.settings.publish_timeout)

    async def publish_change(
        self, ns: str, key: str, version: int, op: Literal["set", "delete"]
    ) -> Event:
        """Publish one key event and return it once the broker acknowledged it.

        Raises :class:`InvalidNamespace`, :class:`InvalidKey`,
        :class:`InvalidVersion` or ``ValueError`` (op) before sending anything;
        :class:`EventsUnavailable` when the broker does not acknowledge within
        ``settings.publish_timeout`` or refuses (the event may still arrive later:
        retrying is safe, events are idempotent by version).
        """
        _check_change(ns, key, version, op)
        if self._producer is None:
            raise RuntimeError("ChangePublisher is not started: call start() or use async with")
        event = events.key_event(ns, key, version, op, origin=self.origin)
        try:
            await asyncio.wait_for(
                self._producer.send_and_wait(
                    self.settings.topic, events.encode(event), key=event.kafka_key
                ),
                self.settings.publish_timeout,
            )
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning(
                "change event not acknowledged: ns=%s key=%s version=%d event=%s: %r",
                ns,
                key,
                version,
                event.id,
                exc,
            )
            raise EventsUnavailable(
                f"kafka did not acknowledge event {event.id}: {exc!r}", event_id=event.id
            ) from exc
        log.debug(
            "change event published: ns=%s key=%s version=%d op=%s event=%s",
            ns,
            key,
            version,
            op,
            event.id,
        )
        return event


async def publish_change(
    settings: KafkaSettings,
    ns: str,
    key: str,
    version: int,
    op: Literal["set", "delete"],
    *,
    origin: str = "app",
) -> Event:
    """Publish one change event with a producer of its own.

    Validates before connecting; connecting and sending are each bounded by
    ``settings.publish_timeout``. For more than an occasional event keep a
    :class:`ChangePublisher` open instead.

    Example::

        await publish_change(KafkaSettings(), "users", "user:7", 1718000000123456, "set")
    """
    _check_change(ns, key, version, op)
    async with ChangePublisher(settings, origin=origin) as publisher:
        return await publisher.publish_change(ns, key, version, op)
