"""Kafka clients built from :class:`KafkaSettings` (security and idempotence included)."""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from libs.common.settings import KafkaSettings


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap,
        "security_protocol": settings.security_protocol,
        "request_timeout_ms": settings.request_timeout_ms,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        opts["ssl_context"] = ssl.create_default_context()
    if settings.security_protocol.startswith("SASL"):
        opts["sasl_mechanism"] = settings.sasl_mechanism or "PLAIN"
        opts["sasl_plain_username"] = settings.sasl_username
        if settings.sasl_password is not None:
            opts["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return opts


def make_producer(settings: KafkaSettings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        enable_idempotence=settings.enable_idempotence,
        linger_ms=settings.linger_ms,
    )


def make_consumer(
    settings: KafkaSettings, *topics: str, group_id: str | None, **extra: Any
) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics,
        **client_options(settings),
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        **extra,
    )
