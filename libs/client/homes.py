"""Home regions: where the client sends writes, without a forwarding hop."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from libs.common.config import NamespaceConfig
from libs.common.homes import home_region

_MAX_NAMESPACES = 10_000


@dataclass(frozen=True, slots=True)
class HomeSetting:
    """A namespace's ``home_region`` (a region or ``"hash"``), ``None`` if unreadable."""

    value: str | None
    until: float


class Homes:
    """Namespace home settings read from the platform, each kept for ``ttl`` seconds.

    ``"hash"`` homes are computed with the server's own function over every
    region of the platform, so the client and the regions always agree.
    """

    def __init__(
        self,
        regions: Sequence[str],
        ttl: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.regions = list(regions)
        self._ttl = ttl
        self._clock = clock
        self._settings: OrderedDict[str, HomeSetting] = OrderedDict()
        self._configs: dict[str, NamespaceConfig] = {}
        self._lock = threading.Lock()

    def lookup(self, ns: str) -> HomeSetting | None:
        """The cached setting, or ``None`` when it must be read (again)."""
        with self._lock:
            setting = self._settings.get(ns)
            if setting is None or setting.until <= self._clock():
                return None
            return setting

    def store(self, ns: str, value: str | None) -> HomeSetting:
        setting = HomeSetting(value, self._clock() + self._ttl)
        with self._lock:
            self._settings[ns] = setting
            self._settings.move_to_end(ns)
            while len(self._settings) > _MAX_NAMESPACES:
                self._settings.popitem(last=False)
        return setting

    def drop(self, ns: str) -> None:
        with self._lock:
            self._settings.pop(ns, None)

    def home(self, setting: HomeSetting, ns: str, key: str | None) -> str | None:
        """The home region of ``key`` (``None``: namespace-wide), or ``None`` if unknown."""
        if setting.value is None:
            return None
        cfg = self._configs.get(setting.value)
        if cfg is None:
            cfg = self._configs.setdefault(
                setting.value, NamespaceConfig(home_region=setting.value)
            )
        return home_region(cfg, self.regions, ns, key)
