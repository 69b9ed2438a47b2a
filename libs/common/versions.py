"""Versions: the order of every change to a key, namespace or tag.

Rules (guarantees 3 and 4 of architecture.md depend on them):

* A version is a positive integer of at most 53 bits (exact in Lua and
  JSON). Versions of one key are strictly increasing and never reused,
  across deletes and across restarts.
* The home region assigns ``max(current + 1, now_us)`` inside the write's Lua
  script, where ``current`` is the version of the value *or tombstone* held
  and ``now_us`` is Redis ``TIME`` in microseconds. The clock term keeps
  versions increasing after Redis lost its data (a restart without
  persistence, an evicted tombstone); the ``+1`` term keeps them increasing
  when the clock steps back.
* An external version (``version=`` from a system of record: a row version,
  a commit timestamp in microseconds, an LSN) lives in the same integer space:
  it applies only when strictly greater than what the platform holds.
* Namespace generations and tag versions follow the same rule, so events from
  a region whose Redis restarted still order after the ones before.
"""

from __future__ import annotations

from libs.common.errors import InvalidVersion

# Versions pass through Lua (doubles) and JSON clients in JavaScript: both are
# exact only up to 2**53 - 1, which still holds microsecond timestamps until 2255.
MAX_VERSION = 2**53 - 1


# the most digits a version can have: longer text is refused before int() sees it (Python
# refuses to convert more than 4,300 digits, and a long number costs time to convert)
_MAX_DIGITS = len(str(MAX_VERSION))
# entity tags one If-Match / If-None-Match header may list
MAX_ETAGS = 100


def parse_version(raw: str, *, what: str = "version") -> int:
    """Parse a client-supplied version (query parameter, header or ETag): digits,
    optionally quoted, optionally a weak tag (``W/"7"``) once."""
    text = raw.strip()
    if text.startswith("W/"):
        text = text[2:]
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        text = text[1:-1]
    if len(text) > _MAX_DIGITS or not text.isascii() or not text.isdigit():
        if text.isascii() and text.isdigit():
            raise InvalidVersion(f"{what} must be between 1 and {MAX_VERSION}")
        raise InvalidVersion(f"{what} must be a positive integer, got {raw[:40]!r}")
    value = int(text)
    if not 0 < value <= MAX_VERSION:
        raise InvalidVersion(f"{what} must be between 1 and {MAX_VERSION}")
    return value


def etag(version: int) -> str:
    return f'"{version}"'


def parse_etag_list(raw: str) -> list[int] | None:
    """Versions named by ``If-None-Match`` / ``If-Match``; ``None`` means ``*``."""
    if raw.strip() == "*":
        return None
    parts = [part for part in raw.split(",", MAX_ETAGS) if part.strip()]
    if len(parts) > MAX_ETAGS:
        raise InvalidVersion(f"at most {MAX_ETAGS} entity tags a header")
    return [parse_version(part, what="entity tag") for part in parts]
