"""Argument validation of the change-event producer API (no broker needed)."""

from __future__ import annotations

from typing import Any

import pytest

from libs.common import changes
from libs.common.changes import ChangePublisher, publish_change
from libs.common.errors import InvalidKey, InvalidNamespace, InvalidVersion
from libs.common.settings import KafkaSettings
from libs.common.versions import MAX_VERSION

# Nothing listens on port 1: a test that reached the network would fail loudly.
SETTINGS = KafkaSettings(bootstrap="127.0.0.1:1", publish_timeout=0.5)

BAD_ARGUMENTS: list[tuple[tuple[Any, ...], type[Exception]]] = [
    (("Users", "k", 1, "set"), InvalidNamespace),
    (("", "k", 1, "set"), InvalidNamespace),
    (("a b", "k", 1, "set"), InvalidNamespace),
    (("x" * 65, "k", 1, "set"), InvalidNamespace),
    ((None, "k", 1, "set"), InvalidNamespace),
    ((b"users", "k", 1, "set"), InvalidNamespace),
    (("users", "", 1, "set"), InvalidKey),
    (("users", "a\nb", 1, "set"), InvalidKey),
    (("users", "k" * 513, 1, "set"), InvalidKey),
    (("users", 7, 1, "set"), InvalidKey),
    (("users", None, 1, "set"), InvalidKey),
    (("users", "k", 0, "set"), InvalidVersion),
    (("users", "k", -1, "set"), InvalidVersion),
    (("users", "k", MAX_VERSION + 1, "set"), InvalidVersion),
    (("users", "k", True, "set"), InvalidVersion),
    (("users", "k", 1.0, "set"), InvalidVersion),
    (("users", "k", "5", "set"), InvalidVersion),
    (("users", "k", None, "set"), InvalidVersion),
    (("users", "k", 1, "update"), ValueError),
    (("users", "k", 1, "SET"), ValueError),
    (("users", "k", 1, None), ValueError),
]


@pytest.mark.parametrize(("args", "error"), BAD_ARGUMENTS)
async def test_publisher_validates_before_sending(
    args: tuple[Any, ...], error: type[Exception]
) -> None:
    publisher = ChangePublisher(SETTINGS, origin="orders-db")
    # not started: validation must come first, so the error is the argument's
    with pytest.raises(error):
        await publisher.publish_change(*args)


@pytest.mark.parametrize(("args", "error"), BAD_ARGUMENTS)
async def test_module_function_validates_before_connecting(
    args: tuple[Any, ...], error: type[Exception]
) -> None:
    with pytest.raises(error):
        await publish_change(SETTINGS, *args)


def test_api_errors_are_not_value_errors() -> None:
    # callers can tell an invalid op (a programming error) from api.md errors
    assert not issubclass(InvalidVersion, ValueError)


@pytest.mark.parametrize("version", [1, MAX_VERSION])
def test_version_bounds_are_inclusive(version: int) -> None:
    changes._check_change("users", "user:7", version, "delete")


async def test_publishing_before_start_says_so() -> None:
    publisher = ChangePublisher(SETTINGS, origin="orders-db")
    with pytest.raises(RuntimeError, match="start"):
        await publisher.publish_change("users", "user:7", 3, "set")


@pytest.mark.parametrize("origin", ["", "x" * 129])
def test_origin_is_checked(origin: str) -> None:
    with pytest.raises(ValueError, match="origin"):
        ChangePublisher(SETTINGS, origin=origin)


async def test_stop_without_start_is_harmless() -> None:
    publisher = ChangePublisher(SETTINGS, origin="orders-db")
    await publisher.stop()
    await publisher.stop()
