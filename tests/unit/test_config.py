from __future__ import annotations

from pathlib import Path

import pytest

from libs.common.config import PlatformConfig, load_platform_config
from libs.common.errors import ConfigError
from libs.common.homes import home_region
from libs.common.settings import parse_memory

EXAMPLE = """
[platform]
regions = ["us-east", "eu-west", "ap-south"]

[namespaces.default]
home_region = "us-east"
default_ttl = 3600
ttl_jitter = 0.1
propagation = "invalidate"

[namespaces.products]
home_region = "eu-west"
origin = "http://127.0.0.1:9000/products/{key}"
negative_ttl = 5
stale_while_revalidate = 30

[reconciler]
interval = 60

[faults]
relay_drop_rate = { "eu-west" = 0.2 }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mrcache.toml"
    path.write_text(text)
    return path


def test_the_api_md_example_loads(tmp_path: Path) -> None:
    cfg = load_platform_config(write(tmp_path, EXAMPLE))
    products = cfg.namespace("products")
    assert products.home_region == "eu-west"
    assert products.default_ttl == 3600  # inherited from [namespaces.default]
    assert products.stale_while_revalidate == 30
    assert cfg.namespace("unlisted").home_region == "us-east"
    assert cfg.faults.relay_drop_rate == {"eu-west": 0.2}


def test_defaults_without_a_file() -> None:
    cfg = load_platform_config(None)
    assert cfg.platform.regions == ["us-east", "eu-west", "ap-south"]
    assert cfg.namespace("x").home_region == "us-east"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[platform]\nregions = ['US']\n", "invalid region"),
        ("[namespaces.x]\nhome_region = 'mars'\n", "home_region"),
        ("[namespaces.x]\ndefault_ttl = -1\n", "default_ttl"),
        ("[namespaces.x]\nttl_jitter = 1.5\n", "ttl_jitter"),
        ("[namespaces.x]\ncolour = 'red'\n", "colour"),
        ("[namespaces.Bad]\n", "namespace"),
        ("[faults]\nrelay_drop_rate = { 'mars' = 0.5 }\n", "mars"),
        ("[faults]\nrelay_drop_rate = { 'us-east' = 2 }\n", "relay_drop_rate"),
        ("this is = not toml [", "not valid TOML"),
        ("[platform]\nregions = ['us-east', 'us-east']\n", "twice"),
        ("[regions.us-east]\neviction = 'random'\n", "eviction"),
        ("[regions.us-east]\nmaxmemory = 'lots'\n", "maxmemory"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_platform_config(write(tmp_path, text))
    assert needle in err.value.message


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_platform_config(tmp_path / "absent.toml")


def test_hash_homes_are_stable_and_spread() -> None:
    cfg = PlatformConfig.model_validate({"namespaces": {"h": {"home_region": "hash"}}})
    regions = cfg.platform.regions
    ns_cfg = cfg.namespace("h")
    homes = [home_region(ns_cfg, regions, "h", f"k{i}") for i in range(3000)]
    assert homes == [home_region(ns_cfg, regions, "h", f"k{i}") for i in range(3000)]
    for region in regions:
        assert 800 < homes.count(region) < 1200
    # removing a region moves only the keys it was home for
    fewer = [home_region(ns_cfg, regions[:2], "h", f"k{i}") for i in range(3000)]
    assert all(a == b for a, b in zip(homes, fewer, strict=True) if a != regions[2])


def test_parse_memory_units() -> None:
    assert parse_memory("64mb") == 64 * 1024**2
    assert parse_memory("1G") == 1024**3
    assert parse_memory("100") == 100
    with pytest.raises(ValueError, match="memory size"):
        parse_memory("lots")


def test_the_shipped_example_config_loads() -> None:
    path = Path(__file__).resolve().parents[2] / "examples" / "mrcache.toml"
    cfg = load_platform_config(path)
    assert cfg.region("us-east").eviction == "lfu"
    assert cfg.namespace("products").stale_while_revalidate == 30
