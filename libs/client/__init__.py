"""The mrcache client SDK: nearest-region reads, home-region writes, read-your-writes.

``AsyncMrcacheClient`` (asyncio) and ``MrcacheClient`` (blocking) have the same
methods and take the same :class:`ClientOptions`; every error they raise is a
:class:`~libs.client.errors.MrcacheClientError` (see :mod:`libs.client.errors`).
"""

from libs.client.aio import AsyncMrcacheClient
from libs.client.errors import ApiError, HomeUnavailable, MrcacheClientError, NoRegionAvailable
from libs.client.models import Item, PutResult
from libs.client.options import ClientOptions
from libs.client.sync import MrcacheClient

__all__ = [
    "ApiError",
    "AsyncMrcacheClient",
    "ClientOptions",
    "HomeUnavailable",
    "Item",
    "MrcacheClient",
    "MrcacheClientError",
    "NoRegionAvailable",
    "PutResult",
]
