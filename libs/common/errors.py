"""Errors every mrcache component raises, rendered by one handler.

Each error carries its public ``code`` (the ``error.code`` of api.md), the
``http_status`` it maps to, and ``retriable`` (whether the same request may
succeed later without change), so handlers never switch on types.

Hierarchy::

    MrcacheError
    ├── ClientError                      4xx: the request itself is wrong
    │   ├── InvalidRequest          400  invalid_request
    │   ├── InvalidNamespace        400  invalid_namespace
    │   ├── InvalidKey              400  invalid_key
    │   ├── InvalidTag              400  invalid_tag
    │   ├── InvalidVersion          400  invalid_version
    │   │   └── VersionRequired     400  version_required
    │   ├── InvalidContentType      400  invalid_content_type
    │   ├── NotFound                404  not_found
    │   ├── MethodNotAllowed        405  method_not_allowed
    │   ├── StaleVersion            409  stale_version
    │   ├── VersionExhausted        409  version_exhausted
    │   ├── PreconditionFailed      412  precondition_failed
    │   ├── ValueTooLarge           413  value_too_large
    │   ├── UnsupportedMediaType    415  unsupported_media_type
    │   └── InvalidTtl              422  invalid_ttl
    ├── UnavailableError                 5xx, retriable: a dependency is down
    │   ├── StoreUnavailable        503  store_unavailable
    │   │   └── StoreOutOfMemory    503  store_unavailable (Redis at maxmemory)
    │   ├── HomeUnavailable         503  home_unavailable
    │   ├── EventsUnavailable       503  events_unavailable
    │   └── OriginUnavailable       502  origin_unavailable
    ├── ConfigError                      bad settings or config file (startup)
    └── InvalidEvent                     an event that fails events.md validation
"""

from __future__ import annotations

from typing import Any, ClassVar


class MrcacheError(Exception):
    """Base of every error mrcache raises on purpose."""

    code: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500
    retriable: ClassVar[bool] = False

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        """The JSON body of api.md: ``{"error": {"code", "message", ...details}}``."""
        return {"error": {"code": self.code, "message": self.message, **self.details}}


class ClientError(MrcacheError):
    http_status = 400
    code = "invalid_request"


class InvalidRequest(ClientError):
    code = "invalid_request"


class InvalidNamespace(ClientError):
    code = "invalid_namespace"


class InvalidKey(ClientError):
    code = "invalid_key"


class InvalidTag(ClientError):
    code = "invalid_tag"


class InvalidVersion(ClientError):
    code = "invalid_version"


class VersionRequired(InvalidVersion):
    """A write without ``version=`` in a namespace whose versions its system of record
    assigns."""

    code = "version_required"


class InvalidContentType(ClientError):
    code = "invalid_content_type"


class NotFound(ClientError):
    code = "not_found"
    http_status = 404


class MethodNotAllowed(ClientError):
    code = "method_not_allowed"
    http_status = 405


class StaleVersion(ClientError):
    """An external ``version=`` not newer than what the platform holds."""

    code = "stale_version"
    http_status = 409


class VersionExhausted(ClientError):
    """The key (or namespace, or tag) holds version 2^53 - 1: a newer one would not be
    exact, so nothing can be written after it."""

    code = "version_exhausted"
    http_status = 409


class PreconditionFailed(ClientError):
    code = "precondition_failed"
    http_status = 412


class ValueTooLarge(ClientError):
    code = "value_too_large"
    http_status = 413


class UnsupportedMediaType(ClientError):
    code = "unsupported_media_type"
    http_status = 415


class InvalidTtl(ClientError):
    code = "invalid_ttl"
    http_status = 422


class UnavailableError(MrcacheError):
    http_status = 503
    retriable = True
    code = "unavailable"


class StoreUnavailable(UnavailableError):
    code = "store_unavailable"


class StoreOutOfMemory(StoreUnavailable):
    """Redis refused a write at ``maxmemory`` with nothing left it may evict."""


class HomeUnavailable(UnavailableError):
    code = "home_unavailable"


class EventsUnavailable(UnavailableError):
    """Kafka did not acknowledge an event in time (it may still arrive: retrying is safe)."""

    code = "events_unavailable"


class OriginUnavailable(UnavailableError):
    code = "origin_unavailable"
    http_status = 502


class NotCached(UnavailableError):
    """``Cache-Control: only-if-cached`` and this region holds no valid copy."""

    code = "not_cached"
    http_status = 504
    retriable = False


class ConfigError(MrcacheError):
    """Settings or the platform config file are invalid; raised at startup."""

    code = "config_error"


class InvalidEvent(MrcacheError):
    """A Kafka message that is not a valid events.md event."""

    code = "invalid_event"
    http_status = 400
