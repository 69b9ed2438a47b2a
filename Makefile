# The two commands of the README: `make run` and `make test`. Both bootstrap a
# fresh machine: .venv, the package with its dev tools, and redis-server.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: bootstrap redis-server run test lint typecheck unit bench clean

bootstrap: redis-server $(STAMP)

redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server with apt-get"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server >/dev/null; }

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

run: bootstrap
	$(VENV)/bin/mrcache up --regions us-east,eu-west,ap-south --base-port 8100

lint: bootstrap
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: bootstrap
	$(VENV)/bin/mypy

test: lint typecheck
	$(VENV)/bin/pytest

unit: bootstrap
	$(VENV)/bin/pytest tests/unit

bench: bootstrap
	$(PY) -m bench.regional_cache

clean:
	rm -rf $(VENV) .mrcache .pytest_cache .mypy_cache .ruff_cache
