from __future__ import annotations

import pytest

from libs.common.auth import Authenticator, sha256_hex
from libs.common.config import AuthKey
from services.regional_cache.auth import required_scope


def authenticator() -> Authenticator:
    return Authenticator(
        [
            AuthKey(
                name="reader",
                secret_sha256=sha256_hex("s1"),
                scopes=["read"],
                namespaces=["catalog", "catalog.*"],
            ),
            AuthKey(name="root", secret_sha256=sha256_hex("s2"), scopes=["admin"]),
        ]
    )


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Bearer ", "Basic s1", "Bearer s3", "bearer nope", "s1"]
)
def test_bad_or_missing_keys_identify_nobody(header: str | None) -> None:
    assert authenticator().identify(header) is None


def test_scopes_over_namespace_patterns() -> None:
    reader = authenticator().identify("Bearer s1")
    assert reader is not None and reader.name == "reader"
    assert reader.allows("read", "catalog") and reader.allows("read", "catalog.eu")
    assert not reader.allows("read", "catalogue") and not reader.allows("read", "other")
    assert not reader.allows("write", "catalog") and not reader.allows("admin", None)
    assert reader.allows("any", None)
    root = authenticator().identify("bearer s2")
    assert root is not None and root.allows("write", "anything")


def test_no_keys_means_disabled() -> None:
    assert not Authenticator([]).enabled


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/v1/ns/catalog/keys/a/b", ("read", "catalog")),
        ("PUT", "/v1/ns/catalog/keys/a", ("write", "catalog")),
        ("DELETE", "/v1/ns/catalog/keys/a", ("write", "catalog")),
        ("POST", "/v1/ns/catalog/keys:batchGet", ("read", "catalog")),
        ("POST", "/v1/ns/catalog/invalidate", ("invalidate", "catalog")),
        ("POST", "/v1/ns/catalog/tags/t/invalidate", ("invalidate", "catalog")),
        ("GET", "/v1/ns/catalog", ("read", "catalog")),
        ("GET", "/v1/ns", ("admin", None)),
        ("GET", "/v1/info", ("any", None)),
        ("GET", "/v1/unknown", ("admin", None)),
    ],
)
def test_required_scope(method: str, path: str, expected: tuple[str, str | None]) -> None:
    assert required_scope(method, path) == expected


def test_secrets_never_show_in_settings_reprs() -> None:
    from services.regional_cache.settings import RegionalCacheSettings

    settings = RegionalCacheSettings(
        redis={"url": "rediss://cache:6380/0", "password": "redis-pass-1"},
        kafka={
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "PLAIN",
            "sasl_username": "svc",
            "sasl_password": "kafka-pass-2",
        },
        internal_token="hop-token-3",
    )
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    for secret in ("redis-pass-1", "kafka-pass-2", "hop-token-3"):
        assert secret not in shown
