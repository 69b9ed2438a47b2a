"""``mrcache-relay``: apply the event stream to one region's Redis."""

from __future__ import annotations

from libs.common.service import run
from services.invalidation_relay.app import create_app
from services.invalidation_relay.settings import RelaySettings


def main() -> None:
    run("relay", RelaySettings, create_app, graceful=20)


if __name__ == "__main__":
    main()
