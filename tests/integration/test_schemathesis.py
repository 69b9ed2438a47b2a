"""Schemathesis against the running service: no 5xx and no schema violation."""

from __future__ import annotations

from pathlib import Path

from tests.support.fuzz import assert_schemathesis_clean
from tests.support.platform import Service


def test_generated_requests_find_no_server_error(service: Service, tmp_path: Path) -> None:
    assert_schemathesis_clean(service.url, tmp_path)
