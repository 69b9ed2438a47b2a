# syntax=docker/dockerfile:1
# One image for every mrcache service; each compose service picks its command:
#   python -m services.regional_cache      (default; port 8100)
#   python -m services.invalidation_relay  (port 9100)
#   python -m services.reconciler          (port 9200)
#   python -m services.meter               (port 9300)
# Every service is configured through MRCACHE_* environment variables (README).

FROM python:3.11.9-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/mrcache
# Only what the package needs (.dockerignore keeps tests, bench, .venv and .git out).
COPY pyproject.toml README.md ./
COPY libs ./libs
COPY services ./services
# The runtime dependencies only: no [dev] extra.
RUN /opt/mrcache/bin/pip install .

FROM python:3.11.9-slim-bookworm
ENV PATH=/opt/mrcache/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 mrcache \
    && useradd --system --uid 10001 --gid mrcache --home-dir /home/mrcache --create-home mrcache
COPY --from=build /opt/mrcache /opt/mrcache
# Outside any source tree, so `python -m services.*` imports the installed package.
WORKDIR /home/mrcache
# Fail the build, not the container, when a service module or its Lua scripts are missing.
RUN python -c "import services.regional_cache.__main__, services.invalidation_relay.__main__, services.reconciler.__main__, services.meter.__main__" \
    && python -c "import importlib.resources as r; assert any(p.name.endswith('.lua') for p in r.files('libs.common').joinpath('lua').iterdir())"
USER 10001:10001
EXPOSE 8100 9100 9200 9300
CMD ["python", "-m", "services.regional_cache"]
