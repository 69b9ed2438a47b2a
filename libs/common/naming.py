"""Names and limits of api.md: regions, namespaces, keys, tags, TTLs.

Every function either returns the normalised value or raises the error whose
``code`` api.md names for that violation, so HTTP handlers, the event decoder
and config loading share one definition of what is valid.
"""

from __future__ import annotations

import math
import random
import re
from urllib.parse import quote

from libs.common.errors import (
    ConfigError,
    InvalidContentType,
    InvalidKey,
    InvalidNamespace,
    InvalidTag,
    InvalidTtl,
)

REGION_RE = re.compile(r"[a-z][a-z0-9-]{1,31}")
NAMESPACE_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
MAX_KEY_BYTES = 512
MAX_TAGS = 16
# keys per batch request (batchGet is api.md's; a warm-up batch is region-to-region)
MAX_BATCH_KEYS = 1000
MAX_WARM_KEYS = 500
# bytes a JSON body may take per key it lists: a 512-byte key escaped as \uXXXX is 3 KiB
JSON_BYTES_PER_KEY = 4096
# C0 controls, DEL and C1 controls: invisible in logs and ambiguous in URLs.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def check_region(name: str) -> str:
    if not isinstance(name, str) or not REGION_RE.fullmatch(name):
        raise ConfigError(f"invalid region name {name!r}: must match {REGION_RE.pattern}")
    return name


def check_namespace(ns: str) -> str:
    if not NAMESPACE_RE.fullmatch(ns):
        raise InvalidNamespace(
            f"namespace {_shown(ns)} must match {NAMESPACE_RE.pattern}",
        )
    return ns


def check_key(key: str) -> str:
    """A key is 1..512 bytes of UTF-8 without control characters."""
    if not key:
        raise InvalidKey("key must not be empty")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidKey("key is not valid UTF-8") from None
    if size > MAX_KEY_BYTES:
        raise InvalidKey(f"key is {size} bytes, at most {MAX_KEY_BYTES} allowed")
    if _CONTROL_RE.search(key):
        raise InvalidKey("key must not contain control characters")
    return key


def path_segment(text: str) -> str:
    """``text`` as one URL path segment: every reserved byte escaped, and a segment of
    dots alone (``.``, ``..``) as ``%2E``s, which HTTP clients would otherwise resolve
    as relative-path steps (``/entries/..`` becomes ``/``), reaching another route."""
    quoted = quote(text, safe="")
    return quoted.replace(".", "%2E") if quoted.strip(".") == "" else quoted


def decode_key(raw: bytes) -> str:
    """Decode URL-decoded key bytes strictly (a lenient decoder would alias keys)."""
    try:
        return check_key(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidKey("key is not valid UTF-8") from None


def check_tag(tag: str) -> str:
    if not NAMESPACE_RE.fullmatch(tag):
        raise InvalidTag(f"tag {_shown(tag)} must match {NAMESPACE_RE.pattern}")
    return tag


def parse_tags(raw: str | None) -> tuple[str, ...]:
    """Parse ``tags=a,b``: validated, de-duplicated, order kept, at most 16."""
    if raw is None or raw == "":
        return ()
    tags = tuple(dict.fromkeys(check_tag(t.strip()) for t in raw.split(",")))
    if len(tags) > MAX_TAGS:
        raise InvalidTag(f"{len(tags)} tags given, at most {MAX_TAGS} per entry")
    return tags


def parse_ttl(raw: str | float | None, *, default: float, max_ttl: float) -> float:
    """Seconds, decimal allowed, ``0 < ttl <= max_ttl``; ``None`` takes ``default``."""
    if raw is None:
        return default
    try:
        ttl = float(raw)
    except (TypeError, ValueError):
        raise InvalidTtl(f"ttl {_shown(str(raw))} is not a number of seconds") from None
    if not math.isfinite(ttl) or ttl <= 0 or ttl > max_ttl:
        raise InvalidTtl(f"ttl must be > 0 and <= {max_ttl:g} seconds, got {_shown(str(raw))}")
    return ttl


MAX_CONTENT_TYPE = 255


def check_content_type(raw: str) -> str:
    """A stored Content-Type: printable ASCII, at most 255 characters."""
    if len(raw) > MAX_CONTENT_TYPE or not raw.isascii() or not raw.isprintable():
        raise InvalidContentType(
            f"Content-Type must be printable ASCII of at most {MAX_CONTENT_TYPE} characters"
        )
    return raw


def jittered_ttl(ttl: float, jitter: float, max_ttl: float) -> float:
    """A stored TTL drawn from ``ttl * [1 - jitter, 1 + jitter]``, capped at ``max_ttl``,
    so entries written together do not expire together."""
    if jitter:
        ttl *= random.uniform(1 - jitter, 1 + jitter)
    return min(max(ttl, 0.001), max_ttl)


def _shown(text: str, limit: int = 80) -> str:
    """Quote user input for an error message without echoing megabytes of it."""
    return repr(text if len(text) <= limit else text[:limit] + "...")
