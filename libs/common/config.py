"""The platform config file of api.md (TOML): regions, namespaces, reconciler, faults, auth.

Loaded once at startup and validated strictly: an unknown table or field, a
region name that breaks the naming rule, or a namespace whose home is not a
configured region is a :class:`ConfigError` naming the offending entry.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from libs.common.debezium import DebeziumMapping
from libs.common.errors import ConfigError
from libs.common.naming import NAMESPACE_RE, check_region
from libs.common.origin import check_template
from libs.common.settings import MemorySize

DEFAULT_REGIONS = ("us-east", "eu-west", "ap-south")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NamespaceConfig(_Strict):
    """How one namespace behaves; unlisted namespaces take ``[namespaces.default]``."""

    home_region: str | None = None
    default_ttl: Annotated[float, Field(gt=0)] = 3600.0
    ttl_jitter: Annotated[float, Field(ge=0, lt=1)] = 0.1
    propagation: Literal["invalidate", "replicate"] = "invalidate"
    origin: str | None = None
    negative_ttl: Annotated[float, Field(ge=0)] = 5.0
    stale_while_revalidate: Annotated[float, Field(ge=0)] = 0.0
    # background refreshes of stale copies each wait a random delay up to this many
    # seconds (at most half the stale window), so keys that expire together are not
    # all fetched again together; 0 = at once
    refresh_spread: Annotated[float, Field(ge=0)] = 0.0
    # probabilistic early refresh (XFetch): 0 = off; about 1 refreshes hot keys shortly
    # before they expire, larger values earlier
    xfetch_beta: Annotated[float, Field(ge=0)] = 0.0
    # system-of-record namespaces: an HTTP endpoint returning {"key": version, ...}
    # that the reconciler treats as the authority
    source_of_truth: str | None = None
    # who assigns the namespace's versions: "home", its home region (writes without
    # version= get max(held + 1, now in µs)), or "source", its system of record (row
    # versions, LSNs): every write must carry version=, and an origin answer without one
    # is cached at the version already known, never above it, so the record's next
    # change event always replaces it. Namespaces fed by [[relay.debezium]] or with a
    # source_of_truth are "source" unless set otherwise.
    versions: Literal["home", "source"] = "home"

    @field_validator("origin")
    @classmethod
    def _origin(cls, value: str | None) -> str | None:
        return None if value is None else check_template(value)


class PlatformSection(_Strict):
    regions: list[str] = Field(default_factory=lambda: list(DEFAULT_REGIONS), min_length=1)
    # each region also sends the events it publishes to the other regions directly, which
    # apply them one WAN hop after the write; Kafka stays the durable path (pusher.py)
    push_events: bool = False


class RegionConfig(_Strict):
    url: str | None = None
    eviction: Literal["lru", "lfu"] | None = None
    maxmemory: MemorySize | None = None


class ReconcilerSection(_Strict):
    interval: Annotated[float, Field(gt=0)] = 60.0


class FaultsSection(_Strict):
    relay_drop_rate: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(default_factory=dict)
    # development only: each relay serves PUT /v1/faults to change its drills while it
    # runs (the consistency checker turns event loss on and off on a schedule)
    control: bool = False


class RelaySection(_Strict):
    """Extra topics the relays consume: Debezium change events mapped to keys."""

    debezium: list[DebeziumMapping] = Field(default_factory=list)


class AuthKey(_Strict):
    name: str
    secret_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    scopes: list[Literal["read", "write", "invalidate", "admin"]]
    namespaces: list[str] = Field(default_factory=lambda: ["*"])


class AuthSection(_Strict):
    keys: list[AuthKey] = Field(default_factory=list)


class PlatformConfig(_Strict):
    platform: PlatformSection = Field(default_factory=PlatformSection)
    regions: dict[str, RegionConfig] = Field(default_factory=dict)
    namespaces: dict[str, NamespaceConfig] = Field(default_factory=dict)
    reconciler: ReconcilerSection = Field(default_factory=ReconcilerSection)
    faults: FaultsSection = Field(default_factory=FaultsSection)
    auth: AuthSection = Field(default_factory=AuthSection)
    relay: RelaySection = Field(default_factory=RelaySection)

    @model_validator(mode="after")
    def _check_names(self) -> PlatformConfig:
        regions = self.platform.regions
        for name in regions:
            check_region(name)
        if len(set(regions)) != len(regions):
            raise ValueError(f"platform.regions lists a region twice: {regions}")
        for name in [*self.regions, *self.faults.relay_drop_rate]:
            if name not in regions:
                raise ValueError(f"region {name!r} is not in platform.regions {regions}")
        for ns, cfg in self.namespaces.items():
            if ns != "default" and not NAMESPACE_RE.fullmatch(ns):
                raise ValueError(f"namespace {ns!r} must match {NAMESPACE_RE.pattern}")
            home = cfg.home_region
            if home is not None and home != "hash" and home not in regions:
                raise ValueError(
                    f"namespaces.{ns}.home_region {home!r} is neither 'hash' nor one of {regions}"
                )
        for ns in self._record_fed():
            if self.namespace(ns).versions != "source":
                raise ValueError(
                    f"namespaces.{ns}: a system of record feeds it ([[relay.debezium]] or "
                    'source_of_truth), so its versions must be "source", not "home": its '
                    "row versions and the home region's clock would not be comparable"
                )
        return self

    def _record_fed(self) -> set[str]:
        """Namespaces a system of record feeds: Debezium topics and source_of_truth."""
        fed = {m.ns for m in self.relay.debezium}
        fed |= {ns for ns, cfg in self.namespaces.items() if cfg.source_of_truth is not None}
        return fed - {"default"}

    def namespace(self, ns: str) -> NamespaceConfig:
        """The effective config of ``ns``: its own table over ``[namespaces.default]``."""
        default = self.namespaces.get("default", NamespaceConfig())
        own = self.namespaces.get(ns)
        if own is None or ns == "default":
            merged = default
        else:
            merged = default.model_copy(update=own.model_dump(exclude_unset=True))
        if merged.home_region is None:
            merged = merged.model_copy(update={"home_region": self.platform.regions[0]})
        chosen = "versions" in default.model_fields_set or (
            own is not None and "versions" in own.model_fields_set
        )
        if not chosen and (ns in self._record_fed() or merged.source_of_truth is not None):
            merged = merged.model_copy(update={"versions": "source"})
        return merged

    def region(self, name: str) -> RegionConfig:
        return self.regions.get(name, RegionConfig())


def load_platform_config(path: Path | None) -> PlatformConfig:
    """Read and validate the TOML file; ``None`` gives the embedded defaults."""
    if path is None:
        return PlatformConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    try:
        return PlatformConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"config file {path} is invalid:\n{describe_validation(exc)}") from None


def describe_validation(exc: ValidationError) -> str:
    """A validation error as ``  where: what`` lines, without the values given: a
    setting may hold a password (a Redis URL's), which must not reach a log."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)
