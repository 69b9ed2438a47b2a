"""The Lua scripts that change entries and namespace metadata atomically.

Every change that compares versions runs inside one script on one key, so
two writers (a home write and a relay applying an event, say) can never
interleave between the comparison and the update.
"""

from __future__ import annotations

from importlib.resources import files

from redis.commands.core import AsyncScript

from libs.common.redisclient import RedisClient

# delete a lock or lease only when it still holds our token
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _source(name: str) -> str:
    return (files("libs.common") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


def _recording(name: str) -> str:
    """A script that changes applied versions, with the shared index/digest preamble."""
    return _source("_applied") + "\n" + _source(name)


class Scripts:
    """The scripts registered on one Redis client (EVALSHA, reloaded on NOSCRIPT)."""

    def __init__(self, redis: RedisClient) -> None:
        self.set: AsyncScript = redis.register_script(_recording("set"))
        self.tombstone: AsyncScript = redis.register_script(_recording("tombstone"))
        self.bump: AsyncScript = redis.register_script(_source("bump"))
        self.stamp: AsyncScript = redis.register_script(_source("stamp"))
        self.fill: AsyncScript = redis.register_script(_recording("fill"))
        self.origin_fill: AsyncScript = redis.register_script(_recording("origin_fill"))
        self.release: AsyncScript = redis.register_script(RELEASE)
