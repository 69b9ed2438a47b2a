"""``mrcache-reconciler``: repair, every interval, what the event path missed."""

from __future__ import annotations

from libs.common.service import run
from services.reconciler.app import create_app
from services.reconciler.settings import ReconcilerSettings


def main() -> None:
    run("reconciler", ReconcilerSettings, create_app, graceful=15)


if __name__ == "__main__":
    main()
