"""``mrcache-regional-cache``: run one region's cache service under uvicorn."""

from __future__ import annotations

import sys

import uvicorn

from libs.common import logs
from libs.common.errors import ConfigError
from services.regional_cache.app import create_app
from services.regional_cache.settings import RegionalCacheSettings


def main() -> None:
    try:
        settings = RegionalCacheSettings()
        logs.configure(
            settings.log_level,
            settings.log_format,
            service="regional_cache",
            region=settings.region,
        )
        app = create_app(settings)
    except ConfigError as exc:
        print(f"mrcache-regional-cache: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None
    except ValueError as exc:  # pydantic's ValidationError of the settings
        print(f"mrcache-regional-cache: invalid settings:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None
    # uvicorn handles SIGTERM/SIGINT: stops accepting, finishes requests, runs the lifespan exit.
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
