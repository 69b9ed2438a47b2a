"""Every error the client SDK raises.

Each one carries ``code`` (the server's ``error.code``, or the SDK's own code when
no region answered), ``status`` (the HTTP status, ``None`` when nothing answered)
and ``message``.

Hierarchy::

    MrcacheClientError
    ├── ApiError                        a region answered with an error
    │   ├── InvalidInput          400, 422  invalid_key, invalid_ttl, invalid_request, ...
    │   ├── Unauthorized          401  unauthorized: missing or bad API key
    │   ├── Forbidden             403  forbidden: the key lacks the scope
    │   ├── StaleVersion          409  stale_version (``current_version``)
    │   ├── PreconditionFailed    412  precondition_failed (``current_version``)
    │   ├── ValueTooLarge         413  value_too_large
    │   └── OriginUnavailable     502  origin_unavailable: the namespace's origin failed
    └── UnavailableError                no region could serve the request (retriable)
        ├── HomeUnavailable             the key's home region is unreachable (writes)
        └── NoRegionAvailable           every region failed or is backing off
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class MrcacheClientError(Exception):
    """Base of every error the SDK raises."""

    default_code = "client_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.status = status
        self.details: Mapping[str, Any] = details or {}


class ApiError(MrcacheClientError):
    """A region answered with an error body ``{"error": {"code", "message", ...}}``."""

    default_code = "api_error"
    status: int

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, code=code, status=status, details=details)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


class InvalidInput(ApiError):
    """The request is malformed: a bad namespace, key, tag, version, TTL or body."""

    default_code = "invalid_request"


class Unauthorized(ApiError):
    """No API key, or one the platform does not know."""

    default_code = "unauthorized"


class Forbidden(ApiError):
    """The API key lacks the scope this operation needs on the namespace."""

    default_code = "forbidden"


class _VersionConflict(ApiError):
    @property
    def current_version(self) -> int | None:
        """The version the platform holds (``None`` when the key is absent)."""
        value = self.details.get("current_version")
        return value if isinstance(value, int) else None


class StaleVersion(_VersionConflict):
    """An external ``version=`` that is not newer than the version held."""

    default_code = "stale_version"


class PreconditionFailed(_VersionConflict):
    """``if_match`` / ``if_none_match`` did not hold."""

    default_code = "precondition_failed"


class ValueTooLarge(ApiError):
    """The value exceeds the platform's size limit."""

    default_code = "value_too_large"


class OriginUnavailable(ApiError):
    """The namespace's origin failed and no copy was cached.

    Not a reason to fail over: every region asks the same origin.
    """

    default_code = "origin_unavailable"


class UnavailableError(MrcacheClientError):
    """No region could serve the request; retrying later may succeed."""

    default_code = "unavailable"


class HomeUnavailable(UnavailableError):
    """The home region of the key (or namespace) is unreachable; nothing was written.

    Writes are never sent to another region instead: only the home region
    assigns versions.
    """

    default_code = "home_unavailable"

    def __init__(
        self,
        message: str,
        *,
        home_region: str | None = None,
        status: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, status=status, details=details)
        self.home_region = home_region


class NoRegionAvailable(UnavailableError):
    """Every region failed or is in backoff; ``failures`` maps region to what happened."""

    default_code = "no_region_available"

    def __init__(self, message: str, *, failures: Mapping[str, str]) -> None:
        super().__init__(message)
        self.failures = dict(failures)
