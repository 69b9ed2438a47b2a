"""``mrcache-regional-cache``: run one region's cache service under uvicorn."""

from __future__ import annotations

from libs.common.service import run
from services.regional_cache.app import create_app
from services.regional_cache.settings import RegionalCacheSettings


def main() -> None:
    run("regional-cache", RegionalCacheSettings, create_app)


if __name__ == "__main__":
    main()
