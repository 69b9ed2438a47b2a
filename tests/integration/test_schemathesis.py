"""Schemathesis against the running service: no 5xx and no schema violation.

Run over the standalone Redis only: what it checks (status codes, bodies, headers
against the OpenAPI document) does not depend on the Redis behind the service, and
each run costs minutes; the contract suite covers the cluster path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fuzz import assert_schemathesis_clean
from tests.support.platform import Service


@pytest.mark.parametrize("redis_backend", ["standalone"], indirect=True)
def test_generated_requests_find_no_server_error(service: Service, tmp_path: Path) -> None:
    assert_schemathesis_clean(service.url, tmp_path)
