"""Static checks of docker-compose.multi-region.yml, the Dockerfile and deploy/.

No Docker engine is needed: the compose file is checked structurally, every
``MRCACHE_*`` variable of a service is fed to that service's settings class
(pydantic-settings silently ignores unknown top-level variables, so each name
is also compared with the model's fields), every URL between services must
name a compose service and a port it listens on, and every PromQL expression
of the Grafana dashboard may only use metrics the code registers.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import BaseModel

from libs.common.config import PlatformConfig, load_platform_config
from libs.common.metrics import Metrics
from libs.common.service import ServiceSettings
from services.invalidation_relay.settings import RelaySettings
from services.meter.settings import MeterSettings
from services.reconciler.settings import ReconcilerSettings
from services.regional_cache.settings import RegionalCacheSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.multi-region.yml"
DEPLOY = ROOT / "deploy"
PLATFORM_TOML = DEPLOY / "mrcache.compose.toml"
CONFIG_IN_CONTAINER = "/etc/mrcache/mrcache.toml"

# the module each mrcache service runs, and the settings class that module reads
SETTINGS: dict[str, type[ServiceSettings]] = {
    "services.regional_cache": RegionalCacheSettings,
    "services.invalidation_relay": RelaySettings,
    "services.reconciler": ReconcilerSettings,
    "services.meter": MeterSettings,
}
ROLES = {
    "services.regional_cache": "regional_cache",
    "services.invalidation_relay": "invalidation_relay",
    "services.reconciler": "reconciler",
    "services.meter": "meter",
}

TOP_LEVEL = {"name", "services", "volumes", "networks", "configs", "secrets", "include"}
SERVICE_KEYS = {
    "image",
    "build",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "expose",
    "volumes",
    "depends_on",
    "healthcheck",
    "labels",
    "restart",
    "networks",
    "user",
    "working_dir",
    "deploy",
    "ulimits",
    "logging",
    "init",
    "tmpfs",
    "read_only",
    "cap_drop",
    "security_opt",
    "stop_grace_period",
    "hostname",
    "pull_policy",
}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
DEFAULT_PORTS = {"http": 80, "https": 443, "redis": 6379, "rediss": 6379}


# ---------------------------------------------------------------- loading


@functools.cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "the compose file is not a mapping"
    return data


def services() -> dict[str, Any]:
    found = compose().get("services")
    assert isinstance(found, dict) and found, "the compose file has no services"
    return found


@functools.cache
def platform() -> PlatformConfig:
    return load_platform_config(PLATFORM_TOML)


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """The service's environment (mapping or ``KEY=value`` list), values checked to be strings."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = [str(item).partition("=") for item in raw]
        return {key: value for key, _, value in pairs}
    env: dict[str, str] = {}
    for key, value in raw.items():
        # quoted in YAML, so `true`, `0.0.0.0` or `8100` never change type on the way
        assert isinstance(value, str), f"environment {key}={value!r} must be a quoted string"
        env[str(key)] = value
    return env


def labels(service: Mapping[str, Any]) -> dict[str, str]:
    raw = service.get("labels") or {}
    if isinstance(raw, list):
        return dict(str(item).partition("=")[::2] for item in raw)
    return {str(k): str(v) for k, v in raw.items()}


def command(service: Mapping[str, Any]) -> list[str]:
    raw = service.get("command") or []
    return raw.split() if isinstance(raw, str) else [str(part) for part in raw]


def is_mrcache(service: Mapping[str, Any]) -> bool:
    """Built from this repo's Dockerfile."""
    return "build" in service or str(service.get("image", "")).startswith("mrcache:")


def module_of(service: Mapping[str, Any]) -> str:
    args = command(service)
    assert len(args) >= 3 and args[:2] == ["python", "-m"], (
        f"command {args} must be python -m <module>"
    )
    return args[2]


def image_name(service: Mapping[str, Any]) -> str:
    """The image without tag or digest: ``redis``, ``apache/kafka``."""
    image = str(service.get("image", ""))
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)
    if ":" in last[-1]:
        name = name[: name.rfind(":")]
    return name


def mrcache_services() -> dict[str, Any]:
    return {name: svc for name, svc in services().items() if is_mrcache(svc)}


def bind_mounts(service: Mapping[str, Any]) -> dict[str, Path]:
    """Container path → host path of every ``./...`` bind mount."""
    found: dict[str, Path] = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            source, target = str(volume.get("source", "")), str(volume["target"])
        else:
            source, target = str(volume).split(":")[:2]
        if source.startswith(("./", "../", "/")):
            found[target] = (ROOT / source).resolve()
    return found


def listening_ports(name: str) -> set[int]:
    """The ports a compose service listens on inside the compose network."""
    service = services()[name]
    env = environment(service)
    image = image_name(service)
    if is_mrcache(service):
        assert "MRCACHE_PORT" in env, f"{name} must set MRCACHE_PORT"
        return {int(env["MRCACHE_PORT"])}
    if image == "redis":
        args = command(service)
        return {int(args[args.index("--port") + 1])} if "--port" in args else {6379}
    if image == "apache/kafka":
        listeners = env.get("KAFKA_LISTENERS", "")
        return {int(item.rsplit(":", 1)[1]) for item in listeners.split(",") if item}
    if image == "nginx":
        templates = bind_mounts(service)["/etc/nginx/templates"]
        text = "".join(p.read_text(encoding="utf-8") for p in templates.glob("*.template"))
        return {int(port) for port in re.findall(r"^\s*listen\s+(\d+)", text, re.MULTILINE)}
    if image == "prom/prometheus":
        return {9090}
    if image == "grafana/grafana":
        return {3000}
    return set()


def published(service: Mapping[str, Any]) -> list[tuple[str, int, int]]:
    """(host ip, published port, container port) of every ``ports`` entry."""
    found = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            host_ip = str(entry.get("host_ip", ""))
            found.append((host_ip, int(entry["published"]), int(entry["target"])))
            continue
        parts = str(entry).split("/")[0].split(":")
        if len(parts) == 1:
            found.append(("", int(parts[0]), int(parts[0])))
        elif len(parts) == 2:
            found.append(("", int(parts[0]), int(parts[1])))
        else:
            found.append((":".join(parts[:-2]), int(parts[-2]), int(parts[-1])))
    return found


def depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    raw = service.get("depends_on") or {}
    if isinstance(raw, list):
        return {str(name): "service_started" for name in raw}
    return {str(k): str((v or {}).get("condition", "service_started")) for k, v in raw.items()}


def address(url: str) -> tuple[str, int]:
    """(host, port) of a URL or of a ``host:port`` bootstrap address."""
    if "://" not in url:
        host, _, port = url.rpartition(":")
        return host, int(port)
    parts = urlsplit(url)
    assert parts.hostname, f"{url!r} has no host"
    return parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme]


def assert_targets(url: str, *, role: str | None = None, region: str | None = None) -> str:
    """``url`` names a compose service (of that role and region) and a port it listens on."""
    host, port = address(url)
    assert host in services(), f"{url}: {host!r} is not a compose service"
    assert port in listening_ports(host), (
        f"{url}: {host} listens on {sorted(listening_ports(host))}, not {port}"
    )
    found = labels(services()[host])
    if role is not None:
        assert found.get("com.mrcache.role") == role, f"{url}: {host} is not a {role}"
    if region is not None:
        assert found.get("com.mrcache.region") == region, f"{url}: {host} is not in {region}"
    return host


# ---------------------------------------------------------------- compose structure


def test_compose_is_structurally_valid() -> None:
    data = compose()
    unknown = {k for k in data if k not in TOP_LEVEL and not str(k).startswith("x-")}
    assert not unknown, f"unknown top-level keys {unknown}"
    declared_volumes = set(data.get("volumes") or {})
    for name, service in services().items():
        assert re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name), f"bad service name {name!r}"
        assert isinstance(service, dict), f"{name} is not a mapping"
        assert not set(service) - SERVICE_KEYS, (
            f"{name}: unknown keys {set(service) - SERVICE_KEYS}"
        )
        assert "image" in service, f"{name} has no image"
        for volume in service.get("volumes") or []:
            source = str(volume).split(":")[0] if not isinstance(volume, dict) else volume["source"]
            if not source.startswith(("./", "../", "/")):
                assert source in declared_volumes, f"{name}: volume {source!r} is not declared"
        for target, path in bind_mounts(service).items():
            assert path.exists(), f"{name}: {path} (mounted at {target}) does not exist"


def test_images_are_pinned() -> None:
    for name, service in services().items():
        image = str(service["image"])
        if "@sha256:" in image:
            continue
        assert image_name(service) != image, f"{name}: image {image!r} has no tag"
        tag = image.rsplit(":", 1)[1]
        assert tag != "latest", f"{name}: image {image!r} is not pinned"
        assert re.search(r"\d", tag), f"{name}: tag {tag!r} names no version"


def test_mrcache_image_is_the_package_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name, service in mrcache_services().items():
        assert service["image"] == f"mrcache:{version}", name
        assert service["build"]["context"] == ".", name
        assert (ROOT / service["build"].get("dockerfile", "Dockerfile")).exists(), name


def test_depends_on_targets_exist_with_valid_conditions() -> None:
    for name, service in services().items():
        for target, condition in depends_on(service).items():
            assert target in services(), f"{name} depends on unknown service {target!r}"
            assert condition in CONDITIONS, f"{name} -> {target}: bad condition {condition!r}"
            if condition == "service_healthy":
                assert "healthcheck" in services()[target], f"{name} waits for {target}'s health"
            if condition == "service_completed_successfully":
                assert services()[target].get("restart") == "no", f"{target} must be one-shot"


def test_healthchecks_have_a_test() -> None:
    for name, service in services().items():
        if service.get("restart") == "no":  # one-shot jobs
            continue
        check = service.get("healthcheck")
        assert isinstance(check, dict), f"{name} has no healthcheck"
        test = check.get("test")
        assert test, f"{name}: healthcheck without a test"
        if isinstance(test, list):
            assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, f"{name}: bad test {test}"
        text = " ".join(test) if isinstance(test, list) else str(test)
        for port in re.findall(r"127\.0\.0\.1:(\d+)/", text):
            assert int(port) in listening_ports(name), f"{name}: healthcheck on port {port}"
        if is_mrcache(service):
            assert f"127.0.0.1:{listening_ports(name).pop()}/readyz" in text, name


def test_published_ports_are_unique_and_loopback_while_auth_is_off() -> None:
    seen: dict[int, str] = {}
    for name, service in services().items():
        for host_ip, port, target in published(service):
            assert port not in seen, f"port {port} published by {seen[port]} and {name}"
            seen[port] = name
            assert target in listening_ports(name), f"{name}: nothing listens on {target}"
            if not platform().auth.keys:
                assert host_ip in LOOPBACK, f"{name}: port {port} open beyond this host"


@pytest.mark.parametrize("name", sorted(mrcache_services()))
def test_mrcache_command_names_a_packaged_module(name: str) -> None:
    module = module_of(services()[name])
    assert module in SETTINGS, f"{name}: {module} is not a service module"
    assert labels(services()[name]).get("com.mrcache.role") == ROLES[module], name
    path = ROOT.joinpath(*module.split("."))
    assert (path / "__main__.py").is_file(), f"{name}: {module} has no __main__.py"
    # the image is `pip install .`: the module must be inside the packages setuptools finds
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    include = find["find"].get("include", ["*"])
    assert any(fnmatch.fnmatchcase(module, pattern) for pattern in include), module
    if not find["find"].get("namespaces", True):
        for parent in [path, *path.relative_to(ROOT).parents][:-1]:
            assert (ROOT / parent / "__init__.py").is_file(), f"{parent} is not packaged"


# ---------------------------------------------------------------- settings


def unread(settings_type: type[BaseModel], env: Mapping[str, str]) -> list[str]:
    """``MRCACHE_*`` names that match no field of the model (nested with ``__``)."""
    missing = []
    for var in env:
        if not var.startswith("MRCACHE_"):
            continue
        model: type[BaseModel] = settings_type
        parts = var.removeprefix("MRCACHE_").lower().split("__")
        for depth, part in enumerate(parts):
            field = model.model_fields.get(part)
            if field is None:
                missing.append(var)
                break
            if depth < len(parts) - 1:
                nested = field.annotation
                if not (isinstance(nested, type) and issubclass(nested, BaseModel)):
                    missing.append(var)
                    break
                model = nested
    return missing


@pytest.mark.parametrize("name", sorted(mrcache_services()))
def test_environment_is_read_by_the_settings_class(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = services()[name]
    settings_type = SETTINGS[module_of(service)]
    env = environment(service)
    assert all(key.startswith("MRCACHE_") for key in env), f"{name}: non-MRCACHE_ variables"
    ignored = unread(settings_type, env)
    assert not ignored, f"{name}: {settings_type.__name__} has no setting for {ignored}"
    assert env.get("MRCACHE_CONFIG") == CONFIG_IN_CONTAINER, name
    assert bind_mounts(service).get(CONFIG_IN_CONTAINER) == PLATFORM_TOML, name

    for key in list(os.environ):
        monkeypatch.delenv(key)
    for key, value in {**env, "MRCACHE_CONFIG": str(PLATFORM_TOML)}.items():
        monkeypatch.setenv(key, value)
    settings = settings_type()

    # every variable arrived: pydantic-settings passes what it read as explicit values
    for var in env:
        target: BaseModel = settings
        for part in var.removeprefix("MRCACHE_").lower().split("__"):
            assert part in target.model_fields_set, f"{name}: {var} was not read"
            value = getattr(target, part)
            if isinstance(value, BaseModel):
                target = value
    assert settings.host == "0.0.0.0", f"{name} must listen on the compose network"
    plat = settings.platform()  # refuses a region the config does not name
    if isinstance(settings, RegionalCacheSettings):
        assert set(settings.urls(plat)) == set(plat.platform.regions), name
        assert settings.bind_host(plat) == "0.0.0.0", f"{name} would bind loopback only"
    if isinstance(settings, MeterSettings):
        assert set(settings.urls(plat)) == set(plat.platform.regions), name
    if isinstance(settings, ReconcilerSettings):
        assert set(settings.region_redis) == set(plat.platform.regions), name


# ---------------------------------------------------------------- topology and URLs


@pytest.mark.parametrize("name", sorted(mrcache_services()))
def test_urls_point_at_compose_services(name: str) -> None:
    service = services()[name]
    env = environment(service)
    region = labels(service).get("com.mrcache.region")
    regions = platform().platform.regions
    if "MRCACHE_REDIS__URL" in env:
        assert_targets(env["MRCACHE_REDIS__URL"], role="redis", region=region)
    if "MRCACHE_KAFKA__BOOTSTRAP" in env:
        for server in env["MRCACHE_KAFKA__BOOTSTRAP"].split(","):
            host = assert_targets(server)
            kafka_env = environment(services()[host])
            # clients reconnect to what the broker advertises, not to the bootstrap
            advertised = {
                address(item) for item in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")
            }
            assert address(server) in advertised, f"{name}: {server} is not advertised"
    for var, role in (("MRCACHE_REGION_URLS", "lb"), ("MRCACHE_REGION_REDIS", "redis")):
        if var in env:
            urls = json.loads(env[var])
            assert set(urls) == set(regions), f"{name}: {var} covers {sorted(urls)}"
            for key, url in urls.items():
                assert_targets(url, role=role, region=key)


def test_platform_config_names_every_region_entry() -> None:
    for region in platform().platform.regions:
        url = platform().region(region).url
        assert url is not None, f"[regions.{region}] has no url"
        assert_targets(url, role="lb", region=region)


@pytest.mark.parametrize("region", ["us-east", "eu-west", "ap-south"])
def test_region_topology(region: str) -> None:
    assert region in platform().platform.regions
    by_role: dict[str, list[str]] = {}
    for name, service in services().items():
        if labels(service).get("com.mrcache.region") == region:
            by_role.setdefault(labels(service).get("com.mrcache.role", "?"), []).append(name)
    assert len(by_role.get("redis", [])) == 1, by_role
    assert len(by_role.get("regional_cache", [])) == 2, by_role
    assert len(by_role.get("invalidation_relay", [])) == 1, by_role
    assert len(by_role.get("lb", [])) == 1, by_role
    redis = by_role["redis"][0]
    for name in by_role["regional_cache"] + by_role["invalidation_relay"]:
        host, _ = address(environment(services()[name])["MRCACHE_REDIS__URL"])
        assert host == redis, f"{name} does not use {redis}"

    # Redis evicts only what carries a TTL, with the limit the platform config states
    args = command(services()[redis])
    cfg = platform().region(region)
    assert args[args.index("--maxmemory-policy") + 1] == f"volatile-{cfg.eviction}"
    assert args[args.index("--maxmemory") + 1] == cfg.maxmemory

    # one published port per region, balanced over both replicas
    lb = services()[by_role["lb"][0]]
    assert len(published(lb)) == 1
    upstreams = {
        value for key, value in environment(lb).items() if key.startswith("MRCACHE_UPSTREAM_")
    }
    assert {address(u)[0] for u in upstreams} == set(by_role["regional_cache"])
    for upstream in upstreams:
        assert_targets(upstream, role="regional_cache", region=region)
    template = bind_mounts(lb)["/etc/nginx/templates"]
    used = {
        m for p in template.glob("*.template") for m in re.findall(r"\$\{(\w+)\}", p.read_text())
    }
    assert used <= set(environment(lb)), f"template variables {used - set(environment(lb))}"


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_builds_one_non_root_image() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    for line in lines:
        if line.startswith("FROM "):
            image = line.split()[1]
            assert ":" in image and not image.endswith(":latest"), line
    final = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :]
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image runs as root"
    text = "\n".join(lines)
    assert re.search(r"pip install \.(\s|$)", text), "the image must pip install the repo"
    assert "[dev]" not in text, "dev dependencies in the image"
    exposed = {int(p) for line in lines if line.startswith("EXPOSE ") for p in line.split()[1:]}
    for name in mrcache_services():
        assert listening_ports(name) <= exposed, f"{name}'s port is not EXPOSEd"
    assert 'CMD ["python", "-m", "services.regional_cache"]' in lines


# ---------------------------------------------------------------- Prometheus and Grafana


def test_prometheus_scrapes_every_mrcache_service() -> None:
    prometheus = services()["prometheus"]
    config_path = bind_mounts(prometheus)["/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load(config_path.read_text())
    scraped: list[str] = []
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics", job["job_name"]
        for static in job["static_configs"]:
            for target in static["targets"]:
                host = assert_targets(target)
                assert is_mrcache(services()[host]), f"{target}: {host} exposes no /metrics"
                scraped.append(host)
    assert len(scraped) == len(set(scraped)), "a target is scraped twice"
    assert set(scraped) == set(mrcache_services())


def test_grafana_datasource_is_the_compose_prometheus() -> None:
    grafana = services()["grafana"]
    provisioning = bind_mounts(grafana)["/etc/grafana/provisioning"]
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    [source] = sources["datasources"]
    assert_targets(source["url"])
    assert image_name(services()[address(source["url"])[0]]) == "prom/prometheus"
    providers = yaml.safe_load((provisioning / "dashboards" / "mrcache.yml").read_text())
    [provider] = providers["providers"]
    mounted = bind_mounts(grafana)[provider["options"]["path"]]
    assert (mounted / "mrcache.json").is_file()
    dashboard = json.loads((mounted / "mrcache.json").read_text())
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]


_VARIABLES = re.compile(r"\$\{[^}]*\}|\$\w+")
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_OFFSETS = re.compile(r"\boffset\s+-?[\w.]+")
_NUMBERS = re.compile(r"(?<![\w:])\d+(?:\.\d*)?(?:[eE][+-]?\d+)?")
_IDENTIFIER = re.compile(r"[A-Za-z_:][\w:]*")
_KEYWORDS = {"and", "or", "unless", "bool", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Metric names of a PromQL expression (not functions, labels or keywords)."""
    text = _VARIABLES.sub("1m", expr)
    for pattern in (_STRINGS, _MATCHERS, _RANGES, _GROUPING, _OFFSETS, _NUMBERS):
        text = pattern.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        if text[match.end() :].lstrip().startswith("("):  # a function or an aggregation
            continue
        if match.group().lower() not in _KEYWORDS:
            names.add(match.group())
    return names


def exposed_metrics() -> set[str]:
    """What /metrics shows: counters with _total, histograms as _bucket/_sum/_count."""
    names: set[str] = set()
    for family in Metrics().registry.collect():
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}{s}" for s in ("_bucket", "_sum", "_count", "_created")}
        else:
            names.add(family.name)
    return names


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('sum by (region) (rate(a_total{result="hit"}[$__rate_interval])) / b', {"a_total", "b"}),
        ("-log10(clamp_min(1 - c_ratio, 1e-06))", {"c_ratio"}),
        ("histogram_quantile(0.99, sum(rate(d_bucket[5m])) by (le))", {"d_bucket"}),
        ("time() - max(e_seconds) and on (x) f offset 5m", {"e_seconds", "f"}),
    ],
)
def test_metric_names_of_promql(expr: str, expected: set[str]) -> None:
    assert metric_names(expr) == expected


def test_dashboard_uses_only_registered_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "mrcache.json").read_text())
    exposed = exposed_metrics()
    used: set[str] = set()
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names, f"{panel['title']}: no metric in {target['expr']!r}"
            assert names <= exposed, f"{panel['title']}: unknown metrics {names - exposed}"
            used |= names
    required = {
        "mrcache_cache_results_total",  # hit ratio
        "mrcache_request_seconds_bucket",  # latency percentiles
        "mrcache_invalidation_lag_seconds_bucket",  # propagation lag per region
        "mrcache_reconciler_repairs_total",
        "mrcache_meter_freshness_ratio",  # freshness nines
        "mrcache_origin_requests_total",
        "mrcache_origin_breaker_state",
    }
    assert required <= used, f"the dashboard lacks {required - used}"
