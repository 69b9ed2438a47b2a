"""The Lua scripts against a small reference model of the version rules, as a hypothesis
state machine on a real Redis.

Hypothesis strings together any sequence of what the platform does to one key and its
namespace (home writes, conditional and external-version writes, deletes, markers and
deletes from events, remote fills and replicated values, origin fills with and without
a lease and a version, namespace and tag invalidations, stamps taken before or after a
metadata loss, arguments out of range), and after each step the region's state must be
what the model says:

* the applied version never goes back and is the largest version any change applied,
  and never above 2^53 - 1; the leaf digest is the digest of the applied version;
* a change with a version not newer than the applied one changes nothing;
* a version the home assigns is newer than everything it knew, and past 2^53 - 1 the
  write is refused (no version ever repeats);
* an origin fill installs nothing once its lease was revoked, and in a namespace whose
  versions come from its system of record never above the version known;
* a read is what the model judges from the entry, the generation and the tag versions
  (a deletion and a remembered 404 go with their namespace's invalidation, a stale copy
  obeys its tags);
* a script refusing its arguments changes nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from redis.asyncio import Redis

from libs.common import keys
from libs.common.errors import InvalidRequest, PreconditionFailed, StaleVersion, VersionExhausted
from libs.common.store import Entry, Lookup, RegionStore
from libs.common.versions import MAX_VERSION
from tests.support.platform import RedisServer

T = TypeVar("T")
KEY = "k"
TAGS = ("a", "b")
TTL = 600.0
# external versions: small ones, and the edge of the range
VERSIONS = st.one_of(st.integers(1, 60), st.integers(MAX_VERSION - 3, MAX_VERSION))


@dataclass
class Model:
    """What one region knows of one key and its namespace."""

    applied: int = 0
    # the entry: None (no hash), or its kind ("value", "1" deleted, "m" superseded,
    # "n" negative) with its version, value, stamps
    kind: str | None = None
    version: int = 0
    value: bytes | None = None
    generation: int | None = None
    tags: tuple[str, ...] = ()
    tag_stamps: tuple[int, ...] = ()
    expired: bool = False
    gen: int = 0
    tag_versions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TAGS, 0))
    lease: str | None = None
    # the largest generation and tag versions this Redis assigned itself (its clock): an
    # entry written later is stamped at least with them, even after the metadata is lost
    own_gen: int = 0
    own_tags: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TAGS, 0))

    def lookup(self) -> Lookup:
        if self.kind is None:
            return Lookup.ABSENT
        if self.kind in ("1", "n"):
            if self.generation is not None and self.generation < self.gen:
                return Lookup.INVALIDATED
            return Lookup.TOMBSTONE if self.kind == "1" else Lookup.NEGATIVE
        if self.kind == "m":
            return Lookup.SUPERSEDED
        assert self.generation is not None
        if self.generation < self.gen:
            return Lookup.INVALIDATED
        if any(self.tag_versions[t] > s for t, s in zip(self.tags, self.tag_stamps, strict=True)):
            return Lookup.INVALIDATED
        return Lookup.EXPIRED if self.expired else Lookup.HIT


def _digest(version: int) -> int:
    """h(key, version) of _applied.lua: one key in its leaf, so the leaf digest is it."""
    text = hashlib.sha1(f"{KEY}\0{version}".encode(), usedforsecurity=False).hexdigest()
    return int(text[:12], 16) % 2**48


class Scripts(RuleBasedStateMachine):
    """One key of a fresh namespace per example; every rule runs the real script."""

    server: RedisServer

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.redis = Redis.from_url(self.server.url)
        self.store = RegionStore(self.redis, tombstone_ttl=600)
        self.ns = f"m-{uuid.uuid4().hex[:12]}"
        self.model = Model()

    def run(self, awaitable: Awaitable[T]) -> T:
        async def wait() -> T:
            return await awaitable

        return self.loop.run_until_complete(wait())

    def teardown(self) -> None:
        self.run(self.redis.aclose())
        self.loop.close()

    @initialize()
    def start(self) -> None:
        self.now_us = int(time.time() * 1_000_000)

    # -- home writes ---------------------------------------------------------------

    def _take_write(self, version: int, value: bytes, tags: tuple[str, ...], stamps: Any) -> None:
        m = self.model
        m.applied = version
        m.kind, m.version, m.value, m.expired = "value", version, value, False
        m.generation, m.tags, m.tag_stamps = stamps.generation, tags, stamps.tag_versions
        m.lease = None

    @rule(
        value=st.binary(max_size=8),
        tags=st.sampled_from([(), ("a",), ("a", "b")]),
        external=st.none() | VERSIONS,
    )
    def write(self, value: bytes, tags: tuple[str, ...], external: int | None) -> None:
        m = self.model
        held = max(m.version, m.applied)
        try:
            w = self.run(
                self.store.write(
                    self.ns,
                    KEY,
                    value,
                    content_type="x",
                    ttl=TTL,
                    tags=tags,
                    external_version=external,
                )
            )
        except StaleVersion:
            assert external is not None and external <= held
            return
        except VersionExhausted:
            assert external is None and held == MAX_VERSION
            return
        if external is not None:
            assert external > held and w.version == external
        else:
            # the home assigns max(held + 1, now): newer than all it knew, never past the max
            assert held < w.version <= MAX_VERSION
            assert w.version >= min(held + 1, MAX_VERSION) and w.version >= self.now_us
        # stamped at least with the stored generation and tag versions, and with all this
        # Redis ever assigned (lost metadata or not): the write survives their return
        assert w.generation >= max(m.gen, m.own_gen)
        for t, stamp in zip(tags, w.tag_versions, strict=True):
            assert stamp >= max(m.tag_versions[t], m.own_tags[t])
        self._take_write(w.version, value, tags, w)

    @rule(match=st.booleans())
    def conditional_write(self, match: bool) -> None:
        m = self.model
        expect = m.version if match else m.version + 1
        try:
            w = self.run(
                self.store.write(
                    self.ns, KEY, b"cas", content_type="x", ttl=TTL, expect_version=expect
                )
            )
        except PreconditionFailed:
            assert not match
            return
        except VersionExhausted:
            assert match and max(m.version, m.applied) == MAX_VERSION
            return
        assert match
        self._take_write(w.version, b"cas", (), w)

    @rule(external=st.none() | VERSIONS)
    def delete(self, external: int | None) -> None:
        m = self.model
        held = max(m.version, m.applied)
        gen = self.run(self.store.stamps(self.ns, (), clock=False))[0]
        try:
            applied, version = self.run(
                self.store.tombstone(self.ns, KEY, external, generation=gen)
            )
        except VersionExhausted:
            assert external is None and held == MAX_VERSION
            return
        if external is not None and external <= held:
            assert (applied, version) == (False, held)
            return
        assert applied and version > held
        m.applied = m.version = version
        m.kind, m.value, m.generation, m.tags, m.lease = "1", None, gen, (), None

    # -- events and copies -------------------------------------------------------------

    @rule(version=VERSIONS, deleted=st.booleans())
    def event(self, version: int, deleted: bool) -> None:
        """A key event in invalidate mode: a marker (or a deletion) at its version."""
        m = self.model
        held = max(m.version, m.applied)
        applied, now = self.run(self.store.tombstone(self.ns, KEY, version, superseded=not deleted))
        assert applied == (version > held)
        if applied:
            m.applied = m.version = version
            m.kind, m.value, m.tags, m.lease = ("1" if deleted else "m"), None, (), None
            m.generation = None
        assert now == max(held, version)

    @rule(
        version=st.integers(0, 60) | st.integers(MAX_VERSION - 3, MAX_VERSION),
        stamp=st.integers(0, 50),
        tagged=st.booleans(),
        expired=st.booleans(),
    )
    def copy(self, version: int, stamp: int, tagged: bool, expired: bool) -> None:
        """A remote fill or a replicated value: installed only where nothing newer is held
        (the same version only over a marker, a 404 or nothing)."""
        m = self.model
        now_ms = int(time.time() * 1000)
        expires = now_ms - 1000 if expired else now_ms + 600_000
        tags = ("a",) if tagged else ()
        entry = Entry(b"copy", "x", version, now_ms, expires, tags, stamp, (stamp,) * len(tags))
        installed, held = self.run(self.store.fill(self.ns, KEY, entry))
        cur = max(m.version, m.applied)
        expected = not expired and (
            version > cur or (version == cur and (m.kind in (None, "m", "n") or m.version != cur))
        )
        assert installed == expected, (version, cur, m.kind)
        if installed:
            if version > 0:
                m.applied = max(m.applied, version)
            m.kind, m.version, m.value, m.expired = "value", version, b"copy", False
            m.generation, m.tags, m.tag_stamps, m.lease = stamp, tags, (stamp,) * len(tags), None
        assert held == (version if installed else cur)

    # -- origin fills ------------------------------------------------------------------

    @rule()
    def lease(self) -> None:
        token = uuid.uuid4().hex
        taken = self.run(self.store.acquire_lease(self.ns, KEY, token, 60))
        assert taken == (self.model.lease is None)
        if taken:
            self.model.lease = token

    @rule(
        valid=st.booleans(),
        found=st.booleans(),
        theirs=st.none() | st.integers(1, 60),
        source=st.booleans(),
    )
    def origin_fill(self, valid: bool, found: bool, theirs: int | None, source: bool) -> None:
        m = self.model
        token = m.lease if valid and m.lease else "not-the-lease"
        gen = self.run(self.store.stamps(self.ns, ()))[0]
        cur = max(m.version, m.applied)
        try:
            written = self.run(
                self.store.origin_fill(
                    self.ns,
                    KEY,
                    token,
                    value=b"origin" if found else None,
                    content_type="x",
                    version=theirs,
                    ttl=TTL,
                    generation=gen,
                    source_versions=source,
                )
            )
        except VersionExhausted:
            assert found and not source and m.lease == token and cur == MAX_VERSION
            m.lease = None
            return
        if m.lease != token or m.lease is None:
            assert written is None  # revoked: nothing installed
            return
        m.lease = None  # spent, whatever it installed
        same_deleted = m.kind == "1" and m.version == cur
        if not found:
            assert written is not None and written.version == cur
            m.kind, m.version, m.value, m.generation, m.tags = "n", cur, None, gen, ()
            return
        if source:
            want = theirs if theirs is not None else cur
            if want < cur or (want == cur and same_deleted):
                assert written is None
                return
        elif theirs is not None and (theirs > cur or (theirs == cur and not same_deleted)):
            want = theirs
        else:
            assert written is not None and cur < written.version <= MAX_VERSION
            want = written.version
        assert written is not None and written.version == want, (written, want, cur)
        assert want <= MAX_VERSION
        if source:
            assert want <= max(cur, theirs or 0)  # never above what is known
        if want > 0:
            m.applied = max(m.applied, want)
        m.kind, m.version, m.value, m.expired = "value", want, b"origin", False
        m.generation, m.tags, m.tag_stamps = gen, (), ()

    # -- namespace metadata ------------------------------------------------------------

    @rule(version=st.none() | VERSIONS)
    def invalidate_namespace(self, version: int | None) -> None:
        m = self.model
        try:
            applied, now = self.run(self.store.bump_namespace(self.ns, version))
        except VersionExhausted:
            assert version is None and m.gen == MAX_VERSION
            return
        if version is not None:
            assert applied == (version > m.gen)
        else:
            m.own_gen = max(m.own_gen, now)
        assert now >= m.gen and now <= MAX_VERSION
        m.gen = now

    @rule(tag=st.sampled_from(TAGS), version=st.none() | VERSIONS)
    def invalidate_tag(self, tag: str, version: int | None) -> None:
        m = self.model
        try:
            _, now = self.run(self.store.bump_tag(self.ns, tag, version))
        except VersionExhausted:
            assert version is None and m.tag_versions[tag] == MAX_VERSION
            return
        assert now >= m.tag_versions[tag]
        if version is None:
            m.own_tags[tag] = max(m.own_tags[tag], now)
        m.tag_versions[tag] = now

    @rule()
    def lose_metadata(self) -> None:
        """The namespace's metadata is gone (an empty restart, an older snapshot)."""
        self.run(self.redis.delete(keys.namespace_meta(self.ns)))
        self.model.gen = 0
        self.model.tag_versions = dict.fromkeys(TAGS, 0)

    @precondition(lambda self: self.model.kind == "value")
    @rule()
    def expire(self) -> None:
        """The soft TTL passes (the hash is kept for stale serving)."""
        self.run(self.redis.hset(keys.entry(self.ns, KEY), "exp", "1"))
        self.model.expired = True

    # -- arguments out of range --------------------------------------------------------

    @rule(
        case=st.sampled_from(
            [
                ("fill", 5, 10**20),
                ("fill", 2**60, 2**42),
                ("fill", -1, 2**42),
                ("tombstone", 2**53, None),
                ("bump", 2**53, None),
                ("bump", 0, None),
            ]
        )
    )
    def refused(self, case: tuple[str, int, int | None]) -> None:
        before = self.run(self.redis.hgetall(keys.entry(self.ns, KEY)))
        meta = self.run(self.redis.hgetall(keys.namespace_meta(self.ns)))
        what, number, expires = case
        call: Awaitable[object]
        if what == "fill":
            assert expires is not None
            call = self.store.fill(self.ns, KEY, Entry(b"x", "x", number, 0, expires, ()))
        elif what == "tombstone":
            call = self.store.tombstone(self.ns, KEY, number)
        else:
            call = self.store.bump_namespace(self.ns, number)
        with pytest.raises(InvalidRequest):
            self.run(call)
        assert self.run(self.redis.hgetall(keys.entry(self.ns, KEY))) == before
        assert self.run(self.redis.hgetall(keys.namespace_meta(self.ns))) == meta

    # -- what must hold after every step -------------------------------------------------

    @invariant()
    def applied_version_and_digest(self) -> None:
        leaf = keys.leaf_of(KEY)
        held = self.run(self.redis.hget(keys.index(self.ns, leaf), KEY))
        assert int(held or 0) == self.model.applied <= MAX_VERSION
        digest = self.run(self.redis.hget(keys.digest(self.ns, leaf[: keys.BUCKET_DIGITS]), leaf))
        want = _digest(self.model.applied) if self.model.applied else 0
        assert int(digest or 0) == want

    @invariant()
    def reads_as_the_model_judges(self) -> None:
        result = self.run(self.store.read(self.ns, KEY))
        m = self.model
        assert result.lookup is m.lookup(), (result, m)
        assert result.held_version == m.version
        if result.lookup in (Lookup.HIT, Lookup.EXPIRED):
            assert result.entry is not None and result.entry.value == m.value


@pytest.fixture
def machine(redis_server: RedisServer) -> type[Scripts]:
    Scripts.server = redis_server
    return Scripts


def test_the_scripts_follow_the_version_rules(machine: type[Scripts]) -> None:
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=80,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
