from __future__ import annotations

from urllib.parse import unquote

import pytest

from libs.common.errors import ConfigError, InvalidKey, InvalidNamespace, InvalidTag, InvalidTtl
from libs.common.naming import (
    check_key,
    check_namespace,
    check_region,
    decode_key,
    parse_tags,
    parse_ttl,
    path_segment,
)


@pytest.mark.parametrize("name", ["us-east", "eu-west-1", "ap", "a" * 32])
def test_valid_regions(name: str) -> None:
    assert check_region(name) == name


@pytest.mark.parametrize("name", ["", "a", "US-east", "1east", "us_east", "a" * 33, "us east"])
def test_invalid_regions(name: str) -> None:
    with pytest.raises(ConfigError):
        check_region(name)


@pytest.mark.parametrize("ns", ["a", "0", "products", "a.b-c_d", "x" * 64])
def test_valid_namespaces(ns: str) -> None:
    assert check_namespace(ns) == ns


@pytest.mark.parametrize("ns", ["", "A", "_a", ".a", "a/b", "x" * 65, "é", "a b"])
def test_invalid_namespaces(ns: str) -> None:
    with pytest.raises(InvalidNamespace) as err:
        check_namespace(ns)
    assert err.value.http_status == 400


def test_key_limits_count_utf8_bytes() -> None:
    assert check_key("k" * 512)
    assert check_key("é" * 256)  # 512 bytes
    with pytest.raises(InvalidKey):
        check_key("é" * 257)
    with pytest.raises(InvalidKey):
        check_key("")


@pytest.mark.parametrize("key", ["a\x00b", "tab\there", "line\n", "del\x7f", "c1\x85"])
def test_keys_reject_control_characters(key: str) -> None:
    with pytest.raises(InvalidKey):
        check_key(key)


def test_keys_allow_slashes_spaces_and_unicode() -> None:
    for key in ["a/b/c", "with space", "日本語", "{braces}", "%41"]:
        assert check_key(key) == key


def test_decode_key_is_strict_utf8() -> None:
    assert decode_key("é".encode()) == "é"
    with pytest.raises(InvalidKey):
        decode_key(b"\xff\xfe")
    with pytest.raises(InvalidKey):
        decode_key(b"\xed\xa0\x80")  # an encoded surrogate


def test_tags_parse_dedupe_and_limit() -> None:
    assert parse_tags(None) == ()
    assert parse_tags("") == ()
    assert parse_tags("a,b,a") == ("a", "b")
    assert len(parse_tags(",".join(f"t{i}" for i in range(16)))) == 16
    with pytest.raises(InvalidTag):
        parse_tags(",".join(f"t{i}" for i in range(17)))
    with pytest.raises(InvalidTag):
        parse_tags("Bad")
    with pytest.raises(InvalidTag):
        parse_tags("a,,b")


@pytest.mark.parametrize("raw", ["0", "-1", "nan", "inf", "abc", "", "2592001", "1e400"])
def test_invalid_ttls(raw: str) -> None:
    with pytest.raises(InvalidTtl) as err:
        parse_ttl(raw, default=60, max_ttl=2592000)
    assert err.value.http_status == 422


def test_valid_ttls() -> None:
    assert parse_ttl(None, default=60, max_ttl=100) == 60
    assert parse_ttl("0.25", default=60, max_ttl=100) == 0.25
    assert parse_ttl("100", default=60, max_ttl=100) == 100


@pytest.mark.parametrize(
    ("text", "segment"),
    [
        (".", "%2E"),
        ("..", "%2E%2E"),
        ("a.b", "a.b"),
        (".hidden", ".hidden"),
        ("a/..", "a%2F.."),
        ("%2E", "%252E"),
        ("sp ace?", "sp%20ace%3F"),
    ],
)
def test_path_segment_escapes_what_would_change_the_path(text: str, segment: str) -> None:
    assert path_segment(text) == segment
    assert unquote(segment) == text
