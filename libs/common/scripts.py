"""The Lua scripts that change entries and namespace metadata atomically.

Every change that compares versions runs inside one script on one key, so
two writers (a home write and a relay applying an event, say) can never
interleave between the comparison and the update.

Each script declares its Redis 7 flags (``#!lua flags=...``). A flagged script
that may write is refused as a whole when Redis is out of memory, instead of
failing at its first write after earlier ones (an unflagged script would
half-apply). Invalidations (a tombstone or marker, a generation or tag bump) and
releasing a lock carry ``allow-oom``: they free or shrink what they touch, and an
invalidation must never fail for lack of memory. Every script also checks its
numbers before its first write, so a bad argument changes nothing.
"""

from __future__ import annotations

from importlib.resources import files

from redis.commands.core import AsyncScript

from libs.common.redisclient import RedisClient

# delete a lock or lease only when it still holds our token
RELEASE = """#!lua flags=allow-oom
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# the flags of each script's shebang line ('' = none: may write, refused when out of memory)
_FLAGS = {
    "set": "",
    "fill": "",
    "origin_fill": "",
    "tombstone": "allow-oom",
    "bump": "allow-oom",
    "stamp": "no-writes",
}
# scripts that change applied versions, with the shared index/digest preamble
_RECORDING = ("set", "fill", "origin_fill", "tombstone")


def _source(name: str) -> str:
    return (files("libs.common") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


def script(name: str) -> str:
    """The full text of a script of ``lua/``: its shebang, the preamble if it records
    applied versions, then its body."""
    flags = _FLAGS[name]
    head = f"#!lua flags={flags}\n" if flags else "#!lua\n"
    preamble = _source("_applied") + "\n" if name in _RECORDING else ""
    return head + preamble + _source(name)


class Scripts:
    """The scripts registered on one Redis client (EVALSHA, reloaded on NOSCRIPT)."""

    def __init__(self, redis: RedisClient) -> None:
        self.set: AsyncScript = redis.register_script(script("set"))
        self.tombstone: AsyncScript = redis.register_script(script("tombstone"))
        self.bump: AsyncScript = redis.register_script(script("bump"))
        self.stamp: AsyncScript = redis.register_script(script("stamp"))
        self.fill: AsyncScript = redis.register_script(script("fill"))
        self.origin_fill: AsyncScript = redis.register_script(script("origin_fill"))
        self.release: AsyncScript = redis.register_script(RELEASE)
