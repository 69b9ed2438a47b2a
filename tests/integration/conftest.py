from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.support.platform import Service


@pytest.fixture
def client(service: Service) -> Iterator[httpx.Client]:
    with service.client() as c:
        yield c


@pytest.fixture
def ns() -> str:
    """A fresh namespace per test, so tests never see each other's keys."""
    return f"t-{uuid.uuid4().hex[:12]}"
