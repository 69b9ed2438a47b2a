"""The versions this client wrote, remembered for read-your-writes (a bounded LRU)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from libs.client.models import Item


@dataclass(frozen=True, slots=True)
class Written:
    """The newest version this client wrote for a key, and whether it was a delete."""

    version: int
    deleted: bool = False

    def satisfied_by(self, item: Item | None) -> bool:
        """Whether a read result is at least as new as this write."""
        if item is None:
            return self.deleted
        return item.version >= self.version


class VersionMemory:
    """``(ns, key) -> Written``, least recently used first out past ``capacity``.

    Reads of a remembered key carry ``min_version``, so whichever region serves
    them answers with this version or newer (or, after a delete, with 404).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._written: OrderedDict[tuple[str, str], Written] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._written)

    def remember(self, ns: str, key: str, version: int, *, deleted: bool = False) -> None:
        with self._lock:
            held = self._written.get((ns, key))
            # two writes of this client may complete out of order: keep the newer
            if held is None or version >= held.version:
                self._written[(ns, key)] = Written(version, deleted)
            self._written.move_to_end((ns, key))
            while len(self._written) > self.capacity:
                self._written.popitem(last=False)

    def floor(self, ns: str, key: str) -> Written | None:
        """The write a read of the key must not go behind, if this client made one."""
        with self._lock:
            held = self._written.get((ns, key))
            if held is not None:
                self._written.move_to_end((ns, key))
            return held
