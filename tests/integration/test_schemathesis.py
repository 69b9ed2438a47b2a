"""Schemathesis against the running service: no 5xx and no schema violation."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.support.platform import Service

CHECKS = ",".join(
    [
        "not_a_server_error",
        "response_schema_conformance",
        "content_type_conformance",
        "status_code_conformance",
    ]
)


def test_generated_requests_find_no_server_error(service: Service, tmp_path: Path) -> None:
    st = Path(sys.executable).with_name("st")
    proc = subprocess.run(
        [
            str(st),
            "run",
            f"{service.url}/openapi.json",
            "--checks",
            CHECKS,
            "--max-examples",
            "200",
            "--phases",
            "coverage,fuzzing",
            "--workers",
            "2",
            "--seed",
            "20261126",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    generated = re.search(r"(\d+) generated", out)
    assert generated is not None, out[-3000:]
    assert int(generated.group(1)) >= 1000, out[-3000:]
    assert "failed" not in out.split("Test cases:")[-1], out[-3000:]
