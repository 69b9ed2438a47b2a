"""infra/terraform: formatting, validation where providers are reachable, and a static check.

The static check parses every ``.tf`` file (python-hcl2) and checks what the platform
relies on: one module instance per region with its own provider alias, every ``var.x``
declared, outputs present, secrets marked sensitive, Redis on ``volatile-*`` eviction,
task environment variables that the services' settings classes actually read, and the
reconciler in exactly one region.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest
from pydantic import BaseModel

from libs.common.service import ServiceSettings
from services.invalidation_relay.settings import RelaySettings
from services.meter.settings import MeterSettings
from services.reconciler.settings import ReconcilerSettings
from services.regional_cache.settings import RegionalCacheSettings

ROOT = Path(__file__).resolve().parents[2] / "infra" / "terraform"
MODULE = ROOT / "modules" / "region"
MODULE_SOURCE = "./modules/region"

# terraform service key -> (prefix of its locals, the settings class the process reads)
SERVICES: dict[str, tuple[str, type[ServiceSettings]]] = {
    "regional-cache": ("cache", RegionalCacheSettings),
    "relay": ("relay", RelaySettings),
    "reconciler": ("reconciler", ReconcilerSettings),
    "meter": ("meter", MeterSettings),
}
REQUIRED_ENV = {
    "MRCACHE_REGION",
    "MRCACHE_REDIS__URL",
    "MRCACHE_KAFKA__BOOTSTRAP",
    "MRCACHE_KAFKA__SECURITY_PROTOCOL",
    "MRCACHE_KAFKA__SASL_MECHANISM",
    "MRCACHE_KAFKA__SASL_USERNAME",
    "MRCACHE_KAFKA__ENABLE_IDEMPOTENCE",
    "MRCACHE_HOST",
    "MRCACHE_PORT",
    "MRCACHE_CONFIG",
}
REQUIRED_SECRETS = {"MRCACHE_REDIS__PASSWORD", "MRCACHE_KAFKA__SASL_PASSWORD"}
SECRET_WORDS = ("password", "token", "secret", "api_key")

Doc = dict[str, Any]


# -- terraform CLI ---------------------------------------------------------------


def terraform() -> str:
    found = shutil.which("terraform")
    if found is None:
        pytest.fail("terraform is not on PATH: it is required to check infra/terraform")
    return found


def run_terraform(
    *args: str, cwd: Path, timeout: float = 120, data_dir: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TF_IN_AUTOMATION="1", CHECKPOINT_DISABLE="1")
    if data_dir is not None:  # keeps .terraform out of the repository
        env["TF_DATA_DIR"] = str(data_dir)
    cli_config = env.get("TF_CLI_CONFIG_FILE")
    if cli_config and not Path(cli_config).exists():
        env.pop("TF_CLI_CONFIG_FILE")  # a dangling path only adds a warning
    return subprocess.run(
        [terraform(), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_terraform_fmt() -> None:
    result = run_terraform("fmt", "-check", "-recursive", "-diff", str(ROOT), cwd=ROOT)
    assert result.returncode == 0, f"terraform fmt -check found changes:\n{result.stdout}"


def test_terraform_validate(tmp_path: Path) -> None:
    """Needs the AWS provider: skipped (only this test) when it cannot be downloaded."""
    data_dir = tmp_path / "tfdata"
    lock = ROOT / ".terraform.lock.hcl"
    had_lock = lock.exists()
    try:
        init = run_terraform(
            "init", "-backend=false", "-input=false", "-no-color", cwd=ROOT, data_dir=data_dir
        )
        if init.returncode != 0:
            text = init.stdout + init.stderr
            offline = (
                "registry.terraform.io" in text
                or "Failed to query available provider packages" in text
                or "could not connect" in text.lower()
            )
            if offline:
                pytest.skip(
                    "terraform init cannot download the AWS provider (no network access to "
                    "registry.terraform.io), so terraform validate cannot run here"
                )
            pytest.fail(f"terraform init failed:\n{text}")
        validate = run_terraform("validate", "-no-color", cwd=ROOT, data_dir=data_dir)
        assert validate.returncode == 0, validate.stdout + validate.stderr
    finally:
        if not had_lock:
            lock.unlink(missing_ok=True)


# -- parsing -----------------------------------------------------------------------


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    return text


def _expr(value: Any) -> str:
    """An attribute as text: strings lose their quotes, ``${...}`` its wrapper."""
    text = _unquote(str(value))
    match = re.fullmatch(r"\$\{(.*)\}", text, re.DOTALL)
    return match.group(1) if match else text


def parse(directory: Path) -> dict[str, list[Doc]]:
    """Every top-level block of every .tf file of a directory, by block type."""
    found: dict[str, list[Doc]] = {}
    files = sorted(directory.glob("*.tf"))
    assert files, f"no .tf files in {directory}"
    for path in files:
        with path.open(encoding="utf-8") as handle:
            doc: Doc = hcl2.load(handle)
        for kind, blocks in doc.items():
            found.setdefault(kind, []).extend(blocks)
    return found


def labelled(blocks: list[Doc]) -> dict[str, Doc]:
    """``variable "x" {...}`` blocks by label."""
    return {
        _unquote(name): body
        for block in blocks
        for name, body in block.items()
        if not name.startswith("__")  # python-hcl2's __comments__ / __is_block__
    }


def resources(parsed: dict[str, list[Doc]], kind: str) -> dict[str, Doc]:
    return {
        _unquote(name): body
        for block in parsed.get("resource", [])
        for rtype, named in block.items()
        if _unquote(rtype) == kind
        for name, body in named.items()
        if not name.startswith("__")
    }


def merged_locals(parsed: dict[str, list[Doc]]) -> Doc:
    out: Doc = {}
    for block in parsed.get("locals", []):
        out.update(block)
    return out


def source_text(directory: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(directory.glob("*.tf")))


@pytest.fixture(scope="module")
def root() -> dict[str, list[Doc]]:
    return parse(ROOT)


@pytest.fixture(scope="module")
def module() -> dict[str, list[Doc]]:
    return parse(MODULE)


def module_instances(root: dict[str, list[Doc]]) -> dict[str, Doc]:
    return {
        name: body
        for name, body in labelled(root.get("module", [])).items()
        if _expr(body.get("source", "")) == MODULE_SOURCE
    }


def default_regions(root: dict[str, list[Doc]]) -> list[Any]:
    regions = labelled(root["variable"])["regions"]
    default = regions["default"]
    assert isinstance(default, list)
    return default


# -- structure ---------------------------------------------------------------------


def test_one_module_instance_per_region_with_its_provider(root: dict[str, list[Doc]]) -> None:
    instances = module_instances(root)
    regions = default_regions(root)
    assert len(instances) == len(regions) == 3
    assert [str(_expr(r["aws_region"])) for r in regions] == [
        "us-east-1",
        "eu-west-1",
        "ap-south-1",
    ]

    providers = {
        _expr(body["alias"]): _expr(body["region"])
        for block in root["provider"]
        for name, body in block.items()
        if _unquote(name) == "aws" and "alias" in body
    }
    seen_aliases: set[str] = set()
    seen_indexes: set[str] = set()
    for name, body in instances.items():
        alias = _expr(body["providers"]["aws"])
        assert alias.startswith("aws."), f"module {name} passes {alias}"
        alias = alias.removeprefix("aws.")
        assert alias in providers, f"module {name} uses undeclared provider alias {alias}"
        assert alias not in seen_aliases, f"provider alias {alias} serves two modules"
        seen_aliases.add(alias)
        # the instance's region inputs and its provider's region come from the same entry
        index = re.fullmatch(r"var\.regions\[(\d)\]\.aws_region", _expr(body["aws_region"]))
        assert index, f"module {name}: aws_region should be var.regions[i].aws_region"
        assert providers[alias] == f"var.regions[{index.group(1)}].aws_region", name
        assert _expr(body["region_name"]) == f"var.regions[{index.group(1)}].name", name
        seen_indexes.add(index.group(1))
    assert seen_indexes == {"0", "1", "2"}


def test_reconciler_and_meter_run_in_exactly_one_region(root: dict[str, list[Doc]]) -> None:
    instances = module_instances(root)
    for flag in ("run_reconciler", "run_meter"):
        values = {name: body.get(flag, False) for name, body in instances.items()}
        assert all(isinstance(v, bool) for v in values.values()), (
            f"{flag} must be literal: {values}"
        )
        assert sum(values.values()) == 1, f"{flag} must be true in exactly one region: {values}"
    reconciling = next(b for b in instances.values() if b.get("run_reconciler") is True)
    assert _expr(reconciling["reconciler_region_redis"]) == "local.region_redis"


def _used_variables(directory: Path) -> set[str]:
    return set(re.findall(r"\bvar\.([A-Za-z_][A-Za-z0-9_-]*)", source_text(directory)))


@pytest.mark.parametrize("directory", [ROOT, MODULE], ids=["root", "module"])
def test_every_used_variable_is_declared(directory: Path) -> None:
    declared = set(labelled(parse(directory)["variable"]))
    missing = _used_variables(directory) - declared
    assert not missing, f"{directory}: var.{sorted(missing)} used but not declared"
    unused = declared - _used_variables(directory)
    assert not unused, f"{directory}: variables {sorted(unused)} declared but never used"


@pytest.mark.parametrize("directory", [ROOT, MODULE], ids=["root", "module"])
def test_secret_variables_are_sensitive(directory: Path) -> None:
    for name, body in labelled(parse(directory)["variable"]).items():
        if any(word in name for word in SECRET_WORDS):
            assert body.get("sensitive") is True, f"variable {name} must be sensitive = true"
        assert _expr(body.get("description", "")), f"variable {name} has no description"


def test_module_inputs_are_declared(
    root: dict[str, list[Doc]], module: dict[str, list[Doc]]
) -> None:
    declared = labelled(module["variable"])
    required = {name for name, body in declared.items() if "default" not in body}
    for name, body in module_instances(root).items():
        inputs = {k for k in body if not k.startswith("__")} - {"source", "providers"}
        assert not inputs - set(declared), f"module {name}: unknown inputs {inputs - set(declared)}"
        assert not required - inputs, f"module {name}: missing inputs {required - inputs}"


def test_outputs(root: dict[str, list[Doc]], module: dict[str, list[Doc]]) -> None:
    module_outputs = labelled(module["output"])
    for needed in ("alb_dns_name", "redis_endpoint", "cache_service_name", "relay_service_name"):
        assert needed in module_outputs, f"module output {needed} missing"
    for needed in ("alb_dns_names", "redis_endpoints", "service_names", "endpoint"):
        assert needed in labelled(root["output"]), f"root output {needed} missing"
    # every module.<instance>.<output> the root reads exists
    text = source_text(ROOT)
    instances = set(module_instances(root))
    for instance, output in re.findall(r"\bmodule\.([a-z0-9_]+)\.([a-z0-9_]+)", text):
        assert instance in instances, f"module.{instance} is not declared"
        assert output in module_outputs, f"module.{instance}.{output} is not a module output"
    for name, body in {**module_outputs, **labelled(root["output"])}.items():
        assert "value" in body, f"output {name} has no value"


def test_redis_eviction_is_volatile_and_tls(module: dict[str, list[Doc]]) -> None:
    groups = resources(module, "aws_elasticache_parameter_group")
    assert len(groups) == 1
    (group,) = groups.values()
    params = {_expr(p["name"]): _expr(p["value"]) for p in group["parameter"]}
    policy = params.get("maxmemory-policy")
    assert policy is not None, "the parameter group must set maxmemory-policy"
    assert policy.startswith("volatile-"), policy
    assert policy in ("volatile-lru", "volatile-lfu", "volatile-${var.eviction}"), policy
    eviction = labelled(module["variable"])["eviction"]
    condition = _expr(eviction["validation"][0]["condition"])
    assert "lru" in condition and "lfu" in condition and "allkeys" not in condition

    (group_rg,) = resources(module, "aws_elasticache_replication_group").values()
    assert group_rg["transit_encryption_enabled"] is True
    assert _expr(group_rg["auth_token"]) == "var.redis_auth_token"
    assert _expr(group_rg["parameter_group_name"]) == "aws_elasticache_parameter_group.this.name"
    assert labelled(module["variable"])["redis_auth_token"]["sensitive"] is True


def test_alb_checks_readyz(module: dict[str, list[Doc]]) -> None:
    (group,) = resources(module, "aws_lb_target_group").values()
    assert _expr(group["health_check"][0]["path"]) == "/readyz"


def _settings_path_exists(settings: type[BaseModel], env_name: str) -> bool:
    """Whether ``MRCACHE_A__B`` names a field a (nested) pydantic-settings class reads."""
    assert env_name.startswith("MRCACHE_"), env_name
    model: type[BaseModel] | None = settings
    parts = env_name.removeprefix("MRCACHE_").lower().split("__")
    for i, part in enumerate(parts):
        if model is None or part not in model.model_fields:
            return False
        annotation = model.model_fields[part].annotation
        last = i == len(parts) - 1
        if not last:
            model = (
                annotation
                if isinstance(annotation, type) and issubclass(annotation, BaseModel)
                else None
            )
    return True


def _keys(locals_: Doc, name: str) -> set[str]:
    value = locals_[name]
    assert isinstance(value, dict), f"local.{name} must be a plain object of names"
    return {str(k) for k in value if not str(k).startswith("__")}


def test_task_environment_names_are_settings(module: dict[str, list[Doc]]) -> None:
    locals_ = merged_locals(module)
    services = _expr(locals_["services"])
    common_env = _keys(locals_, "common_environment")
    common_secrets = _keys(locals_, "common_secrets")
    assert common_env >= REQUIRED_ENV - {"MRCACHE_PORT"}
    assert common_secrets >= REQUIRED_SECRETS

    values = {k: _expr(v) for k, v in locals_["common_environment"].items()}
    assert values["MRCACHE_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"
    assert values["MRCACHE_KAFKA__ENABLE_IDEMPOTENCE"] == "true"
    assert values["MRCACHE_HOST"] == "0.0.0.0"
    assert values["MRCACHE_REDIS__URL"] == "local.redis_url"
    redis_url = _expr(locals_["redis_url"])
    assert redis_url.startswith("rediss://"), redis_url

    for key, (prefix, settings) in SERVICES.items():
        # the service's task takes exactly its own locals, and they extend the common ones
        assert re.search(
            rf"{re.escape(key)} = \{{[^}}]*environment = local\.{prefix}_environment", services
        )
        assert re.search(
            rf"{re.escape(key)} = \{{[^}}]*secrets = local\.{prefix}_secrets", services
        )
        assert f"local.common_environment, local.{prefix}_extra_environment" in _expr(
            locals_[f"{prefix}_environment"]
        )
        assert "local.common_secrets" in _expr(locals_[f"{prefix}_secrets"])
        assert f"local.{prefix}_extra_secrets" in _expr(locals_[f"{prefix}_secrets"])

        env = common_env | _keys(locals_, f"{prefix}_extra_environment")
        secrets = common_secrets | _keys(locals_, f"{prefix}_extra_secrets")
        assert not env & secrets, f"{key}: {env & secrets} both plain and secret"
        assert env >= REQUIRED_ENV, f"{key} lacks {REQUIRED_ENV - env}"
        unknown = {name for name in env | secrets if not _settings_path_exists(settings, name)}
        assert not unknown, f"{key}: {sorted(unknown)} are not settings of {settings.__name__}"
        leaked = {n for n in env if any(w in n.lower() for w in SECRET_WORDS)}
        assert not leaked, f"{key}: {leaked} must come from Secrets Manager"

    cache_env = _keys(locals_, "cache_extra_environment")
    assert "MRCACHE_REGION_URLS" in cache_env
    assert "MRCACHE_REGION_REDIS" in _keys(locals_, "reconciler_extra_environment")


def test_settings_check_rejects_unknown_names() -> None:
    assert _settings_path_exists(RegionalCacheSettings, "MRCACHE_KAFKA__SASL_PASSWORD")
    assert _settings_path_exists(RegionalCacheSettings, "MRCACHE_EVICTION__POLICY")
    assert not _settings_path_exists(RelaySettings, "MRCACHE_REGION_URLS")
    assert not _settings_path_exists(RegionalCacheSettings, "MRCACHE_KAFKA__NOPE")
    assert not _settings_path_exists(RegionalCacheSettings, "MRCACHE_REGION__X")


def test_task_definitions_and_logs(module: dict[str, list[Doc]]) -> None:
    (task,) = resources(module, "aws_ecs_task_definition").values()
    assert _expr(task["requires_compatibilities"][0]) == "FARGATE"
    containers = _expr(task["container_definitions"])
    for part in ("each.value.environment", "each.value.secrets", "valueFrom", "awslogs"):
        assert part in containers
    assert resources(module, "aws_cloudwatch_log_group")
    (service,) = resources(module, "aws_ecs_service").values()
    assert _expr(service["launch_type"]) == "FARGATE"


def test_latency_routing(root: dict[str, list[Doc]]) -> None:
    latency = resources(root, "aws_route53_record")["latency"]
    assert _expr(latency["name"]) == "var.hostname"
    assert "latency_routing_policy" in latency


def test_versions_pinned(root: dict[str, list[Doc]]) -> None:
    (block,) = root["terraform"]
    aws = block["required_providers"][0]["aws"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", _expr(aws["version"])), aws["version"]


def test_readme_documents_every_variable(root: dict[str, list[Doc]]) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in labelled(root["variable"]):
        assert f"`{name}`" in readme, f"README.md does not explain variable {name}"
