from __future__ import annotations

import pytest

from libs.common.errors import InvalidVersion
from libs.common.versions import MAX_VERSION, etag, parse_etag_list, parse_version


def test_parse_version_forms() -> None:
    assert parse_version("42") == 42
    assert parse_version('"42"') == 42
    assert parse_version('W/"42"') == 42
    assert parse_version(str(MAX_VERSION)) == MAX_VERSION


@pytest.mark.parametrize("raw", ["0", "-3", "1.5", "abc", "", '""', "٣", str(MAX_VERSION + 1)])
def test_parse_version_rejects(raw: str) -> None:
    with pytest.raises(InvalidVersion):
        parse_version(raw)


def test_etags_round_trip() -> None:
    assert etag(7) == '"7"'
    assert parse_etag_list(etag(7)) == [7]
    assert parse_etag_list('"1", "2"') == [1, 2]
    assert parse_etag_list("*") is None


@pytest.mark.parametrize(
    "raw",
    ["9" * 5000, '"' + "1" * 4301 + '"', "0" * 17, 'W/"' * 2000 + "1", 'W/W/"1"', '"W/1"'],
)
def test_hostile_versions_are_refused_cheaply(raw: str) -> None:
    """Past Python's 4,300-digit int limit, or a weak prefix repeated (which recursed):
    an InvalidVersion (a JSON 400), never ValueError or RecursionError."""
    with pytest.raises(InvalidVersion):
        parse_version(raw)


def test_an_entity_tag_list_is_bounded() -> None:
    assert len(parse_etag_list(",".join(['"1"'] * 100)) or []) == 100
    with pytest.raises(InvalidVersion, match="at most 100"):
        parse_etag_list(",".join(['"1"'] * 101))
