"""The platform config the local services load: the user's file with ``--regions`` applied.

Every service of a local platform reads the same TOML file (``MRCACHE_CONFIG``),
so all of them agree on the regions, their order (the first region is the
default home) and the namespaces. ``up`` writes it into the state directory.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from libs.common.config import PlatformConfig, load_platform_config
from libs.common.errors import ConfigError


def effective_config(path: Path | None, regions: Sequence[str] | None) -> PlatformConfig:
    """Load ``path`` (or the defaults) and replace ``[platform] regions`` with ``regions``."""
    config = load_platform_config(path)
    if regions is None:
        return config
    # Only what the file set is kept, so namespace tables still inherit from the default one.
    data = config.model_dump(mode="json", exclude_unset=True)
    data["platform"] = {**data.get("platform", {}), "regions": list(regions)}
    try:
        return PlatformConfig.model_validate(data)
    except ValidationError as exc:
        source = path if path is not None else "the default config"
        problems = "\n".join(
            f"  {err['msg'].removeprefix('Value error, ')}" for err in exc.errors()
        )
        raise ConfigError(
            f"--regions {','.join(regions)} does not fit {source}:\n{problems}"
        ) from None


def write_config(config: PlatformConfig, path: Path) -> None:
    """Write ``config`` as TOML, keeping only what its source set."""
    body = to_toml(config.model_dump(mode="json", exclude_unset=True))
    path.write_text(
        f"# Written by mrcache up: every service of this platform loads it.\n{body}",
        encoding="utf-8",
    )


def to_toml(data: Mapping[str, Any]) -> str:
    """One ``key = inline value`` line per top-level entry (enough for a JSON-like dict).

    JSON strings are valid TOML basic strings, and TOML has no null, so
    ``None`` values (never produced by a TOML file) are left out.
    """
    return "".join(f"{json.dumps(key)} = {_value(value)}\n" for key, value in data.items())


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{json.dumps(k)} = {_value(v)}" for k, v in value.items() if v is not None)
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
