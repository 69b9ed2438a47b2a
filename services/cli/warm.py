"""``mrcache warm``: fill a new or emptied region with another region's hottest keys.

The source region ranks its keys by recent reads (``GET /internal/v1/hot``);
the target region copies them from the source in batches (``POST
/internal/v1/warm``), each copy installed only if the target knows nothing
newer, the same versioned fill as a remote fill. Batches are paced to
``--rate`` keys per second so the warm-up does not cost the target's users
their p99. Region-to-region routes need ``MRCACHE_INTERNAL_TOKEN`` when the
platform has API keys.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx

from libs.common.auth import INTERNAL_HEADER
from services.cli.errors import CliError
from services.cli.state import read_state

_BAR = 30


@dataclass
class WarmResult:
    keys: int = 0
    installed: int = 0
    seconds: float = 0.0


class Progress:
    """A progress bar on a terminal, a line per tenth elsewhere (logs, CI)."""

    def __init__(self, total: int, out: TextIO) -> None:
        self.total = total
        self.out = out
        self.tty = out.isatty()
        self.started = time.monotonic()
        self._last_tenth = -1

    def update(self, done: int, installed: int) -> None:
        fraction = done / self.total if self.total else 1.0
        rate = done / max(time.monotonic() - self.started, 1e-9)
        text = (
            f"[{'#' * int(fraction * _BAR):<{_BAR}}] {fraction:6.1%} {done}/{self.total} keys, "
            f"{installed} installed, {rate:,.0f} keys/s"
        )
        if self.tty:
            self.out.write("\r" + text)
            if done >= self.total:
                self.out.write("\n")
        elif int(fraction * 10) > self._last_tenth:
            self._last_tenth = int(fraction * 10)
            self.out.write(text + "\n")
        self.out.flush()


def run(
    *,
    state_dir: Path,
    source: str,
    target: str,
    top: int,
    rate: float,
    batch: int,
    ns: str | None = None,
    out: TextIO = sys.stderr,
) -> int:
    state = read_state(state_dir)
    urls = {name: endpoints.url for name, endpoints in state.regions.items()}
    for name in (source, target):
        if name not in urls:
            raise CliError(f"no region {name!r} in {state_dir}: regions are {', '.join(urls)}")
    if source == target:
        raise CliError("--from and --to must be different regions")
    result = warm(
        urls[source], urls[target], source, top=top, rate=rate, batch=batch, ns=ns, out=out
    )
    print(
        f"warmed {target} from {source}: {result.keys} hottest keys, {result.installed} "
        f"installed, {result.keys - result.installed} already as new or gone, "
        f"in {result.seconds:.1f} s"
    )
    return 0


def warm(
    source_url: str,
    target_url: str,
    source: str,
    *,
    top: int,
    rate: float,
    batch: int,
    ns: str | None,
    out: TextIO,
) -> WarmResult:
    token = os.environ.get("MRCACHE_INTERNAL_TOKEN")
    headers = {INTERNAL_HEADER: token} if token else {}
    started = time.monotonic()
    with httpx.Client(timeout=30, trust_env=False, headers=headers) as client:
        params: dict[str, Any] = {"top": top} | ({"ns": ns} if ns else {})
        ranking = _call(client, "GET", f"{source_url}/internal/v1/hot", params=params)
        hot: list[dict[str, Any]] = ranking["keys"]
        result = WarmResult(keys=len(hot))
        progress = Progress(len(hot), out)
        progress.update(0, 0)
        due = time.monotonic()
        done = 0
        for ns, names in _batches(hot, batch):
            # pace batches so the target sees at most `rate` copies a second
            time.sleep(max(0.0, due - time.monotonic()))
            due = max(due, time.monotonic()) + len(names) / rate
            reply = _call(
                client,
                "POST",
                f"{target_url}/internal/v1/warm",
                json={"source": source, "ns": ns, "keys": names},
            )
            result.installed += int(reply["installed"])
            done += len(names)
            progress.update(done, result.installed)
    result.seconds = time.monotonic() - started
    return result


def _batches(hot: Sequence[dict[str, Any]], size: int) -> list[tuple[str, list[str]]]:
    """Consecutive keys of one namespace, at most ``size`` per batch, hottest first."""
    out: list[tuple[str, list[str]]] = []
    for item in hot:
        ns, key = str(item["ns"]), str(item["key"])
        if out and out[-1][0] == ns and len(out[-1][1]) < size:
            out[-1][1].append(key)
        else:
            out.append((ns, [key]))
    return out


def _call(client: httpx.Client, method: str, url: str, **kwargs: Any) -> Any:
    try:
        reply = client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        raise CliError(f"{method} {url}: {exc!r}") from None
    if reply.status_code != 200:
        raise CliError(f"{method} {url} answered {reply.status_code}: {reply.text[:300]}")
    return reply.json()
