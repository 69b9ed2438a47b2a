"""What every mrcache service process shares: base settings and the run loop."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import uvicorn
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.applications import Starlette

from libs.common import logs
from libs.common.config import PlatformConfig, describe_validation, load_platform_config
from libs.common.errors import ConfigError
from libs.common.events import Limits
from libs.common.naming import check_region
from libs.common.settings import KafkaSettings, RedisSettings


class ServiceSettings(BaseSettings):
    """Settings every service of a region reads (environment ``MRCACHE_*``, nested ``__``)."""

    model_config = SettingsConfigDict(
        env_prefix="MRCACHE_", env_nested_delimiter="__", extra="forbid"
    )

    region: str = "us-east"
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8100
    config: Path | None = None
    redis: RedisSettings = Field(default_factory=RedisSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    # A tombstone must outlive any in-flight fill and any event lag of its key.
    tombstone_ttl: Annotated[float, Field(gt=0)] = 24 * 3600.0
    # the API's limits (api.md); relays hold replicated values to them too
    max_value_bytes: Annotated[int, Field(ge=1)] = 1024 * 1024
    max_ttl: Annotated[float, Field(gt=0)] = 30 * 24 * 3600.0
    # seconds an idle keep-alive connection stays open: longer than common clients keep
    # idle connections (httpx 5 s, Go 90 s), so the client closes first and never sends a
    # request on a connection the server is closing at that moment
    keep_alive_timeout: Annotated[float, Field(gt=0, le=3600)] = 120.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = "json"

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        return check_region(value)

    def event_limits(self) -> Limits:
        return Limits(max_value_bytes=self.max_value_bytes, max_ttl=self.max_ttl)

    def platform(self) -> PlatformConfig:
        """The platform config file (or the defaults), checked to contain this region."""
        platform = load_platform_config(self.config)
        if self.region in platform.platform.regions:
            return platform
        if self.config is None:  # no file: a platform of this one region
            section = platform.platform.model_copy(update={"regions": [self.region]})
            return platform.model_copy(update={"platform": section})
        raise ConfigError(
            f"region {self.region!r} is not in platform.regions "
            f"{platform.platform.regions} of {self.config}"
        )


S = TypeVar("S", bound=ServiceSettings)


def redact_urls(text: str) -> str:
    """``scheme://user:password@host`` as ``scheme://***@host`` wherever it appears."""
    return re.sub(r"://[^/@\s]*@", "://***@", text)


def run(
    name: str,
    settings_type: type[S],
    create_app: Callable[[S], Starlette],
    *,
    graceful: float = 10.0,
) -> None:
    """Load settings, build the app and serve it; bad settings exit 2 with a message.

    uvicorn handles SIGTERM/SIGINT: it stops accepting, finishes requests and runs
    the lifespan exit, which is where every service stops its background work.
    """
    try:
        settings = settings_type()
        logs.configure(
            settings.log_level, settings.log_format, service=name, region=settings.region
        )
        app = create_app(settings)
    except ConfigError as exc:
        print(f"mrcache-{name}: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None
    except ValidationError as exc:
        print(f"mrcache-{name}: invalid settings:\n{describe_validation(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
    except ValueError as exc:  # a setting a library refused (a URL it cannot parse)
        print(f"mrcache-{name}: invalid settings: {redact_urls(str(exc))}", file=sys.stderr)
        raise SystemExit(2) from None
    # an app may narrow where it listens (regional_cache: loopback without API keys)
    host = getattr(app.state, "bind_host", settings.host)
    uvicorn.run(
        app,
        host=host,
        port=settings.port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=int(graceful),
        timeout_keep_alive=int(settings.keep_alive_timeout),
    )
