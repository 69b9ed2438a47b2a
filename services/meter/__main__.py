"""``mrcache-meter``: measure, continuously, how fresh every region reads after a write."""

from __future__ import annotations

from libs.common.service import run
from services.meter.app import create_app
from services.meter.settings import MeterSettings


def main() -> None:
    run("meter", MeterSettings, create_app)


if __name__ == "__main__":
    main()
