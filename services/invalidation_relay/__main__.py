"""``mrcache-relay``: apply the event stream to one region's Redis."""

from __future__ import annotations

import sys

import uvicorn

from libs.common import logs
from libs.common.errors import ConfigError
from services.invalidation_relay.app import create_app
from services.invalidation_relay.settings import RelaySettings


def main() -> None:
    try:
        settings = RelaySettings()
        logs.configure(
            settings.log_level,
            settings.log_format,
            service="invalidation_relay",
            region=settings.region,
        )
        app = create_app(settings)
    except ConfigError as exc:
        print(f"mrcache-relay: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None
    except ValueError as exc:
        print(f"mrcache-relay: invalid settings:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=20,
    )


if __name__ == "__main__":
    main()
