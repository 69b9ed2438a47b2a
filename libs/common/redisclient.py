"""A region's Redis client: one standalone server, or a Redis Cluster.

Everything mrcache does on Redis works on both: the scripts of one entry stay
in one hash slot (``keys.py``), namespace metadata is read with plain commands,
and scans run on every primary. The cluster client follows MOVED and ASK
redirections during resharding and rediscovers the topology after a failover.
"""

from __future__ import annotations

from typing import Any, TypeAlias

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from libs.common.settings import RedisSettings

RedisClient: TypeAlias = Redis | RedisCluster

# a failover takes the cluster's node timeout plus an election; retry for that long
_CLUSTER_RETRIES = 12


def make_redis(settings: RedisSettings, *, max_connections: int | None = None) -> RedisClient:
    """The client for ``settings.url``; with ``settings.cluster`` the URL is one seed node.

    A standalone client's pool makes a burst wait up to ``pool_timeout`` for a free
    connection rather than fail at once (a default pool raises when all are in use).
    redis-py's cluster client has no waiting pool: background work on a cluster bounds
    its own concurrency below ``max_connections`` (the reconciler's repairs, a relay's
    partitions)."""
    password = settings.password
    common: dict[str, Any] = {
        "password": password.get_secret_value() if password else None,
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.socket_timeout,
        "max_connections": max_connections or settings.max_connections,
    }
    if not settings.cluster:
        pool = BlockingConnectionPool.from_url(
            settings.url, timeout=settings.pool_timeout, **common
        )
        return Redis.from_pool(pool)
    return RedisCluster.from_url(
        settings.url,
        **common,
        # a MOVED reply patches the slot table; the default (a full rediscovery every 5th
        # MOVED) closes every connection, also those other requests are using
        reinitialize_steps=0,
        retry=Retry(
            ExponentialWithJitterBackoff(base=0.05, cap=1.0),
            _CLUSTER_RETRIES,
            supported_errors=(RedisConnectionError, RedisTimeoutError),
        ),
    )
