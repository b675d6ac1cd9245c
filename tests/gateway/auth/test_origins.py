"""Origins are parsed and compared by scheme, host and port, never globbed (issue 16, point 5)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.auth.middleware import _origin_allowed, parse_allowed_origins, parse_origin
from gateway.config.loader import LOOPBACK_ORIGINS

DEFAULT = parse_allowed_origins(LOOPBACK_ORIGINS)


@pytest.mark.parametrize(
    "origin",
    [
        "http://[::1]:8080",
        "http://[::1]",
        "http://localhost:3000",
        "http://127.0.0.1:6274",
        "HTTP://LOCALHOST:1",
        "http://localhost:8080/",
    ],
)
def test_loopback_origins_pass_by_default(origin: str) -> None:
    assert _origin_allowed(origin, DEFAULT)


@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost:1@evil.com",
        "http://1:80",
        "http://localhost.evil.com:80",
        "http://[::2]:80",
        "http://[::1]x:80",
        "http://evil.com#@localhost:1",
        "http://localhost:1/path",
        "http://localhost:1?q",
        "https://localhost:99999",
        "http://localhost:",
        "http://localhost:-1",
        "null",
        "file://",
        "http://[::1",
        "http://user:pw@localhost:8080",
        "ws://localhost:80",
        "http://localhost\\@evil.com",
        "http://local*:1",
        "http://[:::1]:80",
        "http://localhost :80",
    ],
)
def test_tricks_are_refused(origin: str) -> None:
    assert not _origin_allowed(origin, DEFAULT)


def test_configured_entries_compare_ports() -> None:
    allowed = parse_allowed_origins(["https://app.example.com", "http://[2001:db8::1]:*"])
    assert _origin_allowed("https://app.example.com:443", allowed)
    assert _origin_allowed("https://app.example.com", allowed)
    assert not _origin_allowed("https://app.example.com:8443", allowed)
    assert not _origin_allowed("http://app.example.com", allowed)
    assert _origin_allowed("http://[2001:db8::1]:9", allowed)
    assert parse_allowed_origins(["*"]) is None and _origin_allowed("http://anything", None)


@pytest.mark.parametrize("entry", ["localhost:8080", "http://*.example.com", "http://a/b", "http://a:x"])
def test_a_bad_allow_entry_is_a_config_error(entry: str) -> None:
    with pytest.raises(ValueError, match="allowed origin"):
        parse_allowed_origins([entry])


@given(st.text(max_size=40))
def test_any_text_parses_or_is_refused(text: str) -> None:
    parsed = parse_origin(text)
    if parsed is not None:
        assert parsed.scheme in ("http", "https") and parsed.port is not None and 0 < parsed.port < 65536
        assert "@" not in parsed.host
