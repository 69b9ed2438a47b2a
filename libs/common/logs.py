"""Structured logging: one JSON object per line with the record's extra fields."""

from __future__ import annotations

import contextvars
import logging
import sys
from typing import Any

import orjson

# set per request by the HTTP middleware, read by every log line written meanwhile
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
namespace: contextvars.ContextVar[str | None] = contextvars.ContextVar("namespace", default=None)

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


class JsonFormatter(logging.Formatter):
    def __init__(self, **static: Any) -> None:
        super().__init__()
        self.static = static

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **self.static,
        }
        rid, ns = request_id.get(), namespace.get()
        if rid is not None:
            body["request_id"] = rid
        if ns is not None:
            body["ns"] = ns
        body.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(body, default=str).decode()


def configure(level: str, fmt: str, **static: Any) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(**static))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
