from __future__ import annotations

import logging

import orjson

from libs.common import logs


def test_json_lines_carry_static_and_request_fields() -> None:
    formatter = logs.JsonFormatter(service="regional_cache", region="eu-west")
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "hello %s", ("world",), None)
    record.key = "k1"
    logs.request_id.set("rid-1")
    logs.namespace.set("catalog")
    try:
        line = orjson.loads(formatter.format(record))
    finally:
        logs.request_id.set(None)
        logs.namespace.set(None)
    assert line["msg"] == "hello world" and line["level"] == "warning"
    assert line["region"] == "eu-west" and line["service"] == "regional_cache"
    assert line["request_id"] == "rid-1" and line["ns"] == "catalog" and line["key"] == "k1"
