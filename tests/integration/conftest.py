from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from libs.common.store import RegionStore
from tests.support.platform import Service
from tests.support.redis_cluster import RedisBackend


@pytest.fixture
def client(service: Service) -> Iterator[httpx.Client]:
    with service.client() as c:
        yield c


@pytest.fixture
def ns() -> str:
    """A fresh namespace per test, so tests never see each other's keys."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def store(redis_backend: RedisBackend) -> AsyncIterator[RegionStore]:
    """The region store over each Redis backend of the contract suite."""
    client = redis_backend.async_client()
    yield RegionStore(client, tombstone_ttl=60)
    await client.aclose()
