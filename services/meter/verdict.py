"""What the meter checks and how it judges a region's answer.

Every invalidation kind gives the meter *targets*: a key to probe in every
region and what a client must no longer be served there once the event is
applied.

* a key ``set`` (mrcache's events or a Debezium create/update) at version v: a
  served copy older than v is stale, and so is a 404 from a remembered origin 404
  or a delete older than v;
* a key ``delete`` at version v: a served copy older than v is stale;
* a namespace invalidation to generation g: a served copy or remembered 404 stamped
  with an older generation is stale; the meter probes keys of that namespace it saw
  written before (:class:`Recent`);
* a tag invalidation to version t: a served copy stamped with an older version of
  that tag is stale; the meter probes keys it saw written with the tag.

A region that would serve nothing for the key (its read goes to the home region
or the origin) is *not cached*: neither fresh nor stale, counted on its own.
Anything that is not a well-formed probe answer is an *error*.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from libs.common.events import Event

Verdict = Literal["fresh", "stale", "not_cached", "error"]
VERDICTS: tuple[Verdict, ...] = ("fresh", "stale", "not_cached", "error")
Kind = Literal["key", "delete", "namespace", "tag", "debezium"]
KINDS: tuple[Kind, ...] = ("key", "delete", "namespace", "tag", "debezium")
_SERVED_VALUE = frozenset({"hit", "stale"})
_STATES = frozenset({"hit", "stale", "negative", "tombstone", "absent"})


@dataclass(frozen=True, slots=True)
class Target:
    """One key to probe after one event, and what the event requires of it."""

    kind: Kind
    ns: str
    key: str
    # the key's home region (reported apart: it can never lag its own writes); None
    # when unknown
    home: str | None
    # key events: the event's version, and whether it deleted the key
    version: int = 0
    deleted: bool = False
    # namespace events: the new generation; tag events: the tag and its new version
    generation: int = 0
    tag: str | None = None
    tag_version: int = 0


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def judge(target: Target, probe: Mapping[str, Any] | None) -> Verdict:
    """A region's probe answer (``POST /internal/v1/probe``) for ``target``; None when
    the region gave no usable answer."""
    if probe is None:
        return "error"
    state = probe.get("state")
    if state not in _STATES:
        return "error"
    if state == "absent":
        return "not_cached"
    version = _int(probe.get("version"))
    generation = _int(probe.get("generation", 0))
    if version is None or generation is None:
        return "error"
    value = state in _SERVED_VALUE
    if target.kind == "namespace":
        # a delete stays right whatever the generation; a copy or a remembered 404 goes
        if value or state == "negative":
            return "stale" if generation < target.generation else "fresh"
        return "fresh"
    if target.kind == "tag":
        if not value:
            return "fresh"
        tags = probe.get("tags")
        if not isinstance(tags, dict):
            return "error"
        stamp = _int(tags.get(target.tag, target.tag_version))
        if stamp is None:
            return "error"
        return "stale" if stamp < target.tag_version else "fresh"
    if not value and target.deleted:
        return "fresh"  # a 404 is what a delete must give
    return "fresh" if version >= target.version else "stale"


class Recent:
    """Keys recently written, per namespace and per (namespace, tag), so a namespace or
    tag invalidation has keys to probe. Bounded: ``per_group`` keys a group, at most
    ``groups`` groups (least recently written first out)."""

    def __init__(self, per_group: int = 64, groups: int = 10_000) -> None:
        self.per_group = per_group
        self.groups = groups
        self._groups: OrderedDict[tuple[str, str | None], OrderedDict[str, None]] = OrderedDict()

    def saw(self, ns: str, key: str, tags: tuple[str, ...] = ()) -> None:
        for tag in (None, *tags):
            group = self._groups.get((ns, tag))
            if group is None:
                group = self._groups[ns, tag] = OrderedDict()
                if len(self._groups) > self.groups:
                    self._groups.popitem(last=False)
            else:
                self._groups.move_to_end((ns, tag))
            group[key] = None
            group.move_to_end(key)
            if len(group) > self.per_group:
                group.popitem(last=False)

    def keys(self, ns: str, tag: str | None = None, limit: int = 8) -> list[str]:
        """The ``limit`` keys of the group written last, newest first."""
        group = self._groups.get((ns, tag))
        if not group:
            return []
        return list(reversed(group))[:limit]


def targets(
    event: Event,
    recent: Recent,
    home_of: Callable[[str, str], str | None],
    *,
    debezium: bool = False,
    per_invalidation: int = 8,
) -> list[Target]:
    """The targets of one sampled event; a namespace or tag invalidation gets up to
    ``per_invalidation`` keys written before it."""
    if event.type == "key":
        assert event.key is not None
        deleted = event.op == "delete"
        kind: Kind = "debezium" if debezium else ("delete" if deleted else "key")
        home = home_of(event.ns, event.key)
        return [Target(kind, event.ns, event.key, home, version=event.version, deleted=deleted)]
    tag = event.tag if event.type == "tag" else None
    return [
        Target(
            "tag" if tag is not None else "namespace",
            event.ns,
            key,
            home_of(event.ns, key),
            generation=event.version if tag is None else 0,
            tag=tag,
            tag_version=event.version if tag is not None else 0,
        )
        for key in recent.keys(event.ns, tag, per_invalidation)
    ]
