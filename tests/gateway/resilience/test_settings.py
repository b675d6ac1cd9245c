"""The resilience config: defaults, partial per-server overrides, per-tool policy, errors naming the path."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config.loader import ConfigError, parse_config
from gateway.resilience.policy import ServerPolicy, failure_kind, resolve

SERVERS = {"s": {"command": "x"}, "t": {"command": "y"}}


def test_defaults_and_partial_server_overrides() -> None:
    config = parse_config(
        {
            "mcpServers": SERVERS,
            "gateway": {
                "breaker": {"fail_max": 3},
                "servers": {"s": {"breaker": {"reset_timeout": 5}, "tools": {"search": {"cache": True, "ttl": 9}}}},
            },
        },
        "mcp.json",
        environ={},
    )
    g = config.gateway
    s = ServerPolicy.build(g.breaker, g.retry, g.bulkhead, g.cache, g.servers.get("s"))
    t = ServerPolicy.build(g.breaker, g.retry, g.bulkhead, g.cache, g.servers.get("t"))
    assert (s.breaker.fail_max, s.breaker.reset_timeout) == (3, 5)  # gateway-wide default kept, one key overridden
    assert (t.breaker.fail_max, t.breaker.reset_timeout) == (3, 30)
    assert g.cache.ttl == 60 and g.bulkhead.max_concurrent == 64 and g.redis_url is None

    search = resolve("s", "search", {}, s)  # not annotated read-only, but configured cacheable
    assert search.cacheable and search.ttl == 9 and not search.invalidates and not search.retry
    read = resolve("s", "list", {"readOnlyHint": True}, s)
    assert read.cacheable and read.retry and not read.invalidates and read.breaker_name == "s"
    write = resolve("s", "post", {"readOnlyHint": False}, s)
    assert not write.cacheable and not write.retry and write.invalidates
    idempotent = resolve("s", "update", {"idempotentHint": True}, s)
    assert idempotent.retry and not idempotent.cacheable


@pytest.mark.parametrize(
    ("gateway", "path", "problem"),
    [
        ({"breaker": {"fail_max": 0}}, "$.gateway.breaker.fail_max", "greater than or equal to 1"),
        ({"breaker": {"count": ["nonsense"]}}, "$.gateway.breaker.count[0]", "Input should be"),
        ({"cache": {"tll": 5}}, "$.gateway.cache.tll", "unknown key"),
        ({"servers": {"s": {"retry": {"attempts": 0}}}}, "$.gateway.servers.s.retry.attempts", "greater than"),
        ({"servers": {"s": {"tools": {"x": {"timeout": -1}}}}}, "$.gateway.servers.s.tools.x.timeout", "greater"),
        ({"servers": {"nope": {}}}, "$.gateway.servers.nope", "no server named 'nope'"),
        ({"bulkhead": {"max_queue": -1}}, "$.gateway.bulkhead.max_queue", "greater than or equal to 0"),
    ],
)
def test_bad_resilience_settings_name_the_json_path(gateway: dict, path: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"mcpServers": SERVERS, "gateway": gateway}, Path("config/mcp.json"), environ={})
    assert caught.value.path == path
    assert problem in caught.value.problem


def test_upstream_failures_are_told_from_the_tools_own_errors() -> None:
    config = parse_config({"mcpServers": SERVERS}, "mcp.json", environ={})
    g = config.gateway
    sp = ServerPolicy.build(g.breaker, g.retry, g.bulkhead, g.cache, None)

    def error(text: str, meta: dict | None = None) -> dict:
        result: dict = {"content": [{"type": "text", "text": text}], "isError": True}
        if meta:
            result["_meta"] = meta
        return result

    assert failure_kind("error", error("hubspot: server error 503: unavailable"), sp) == "upstream_5xx"
    assert failure_kind("error", error("slack: rate limited (429); retry after 3s"), sp) == "upstream_429"
    assert failure_kind("error", error("anything", {"mcp-gateway/upstream-status": 502}), sp) == "upstream_5xx"
    assert failure_kind("error", error("gong: not found: call 42 (no detail)"), sp) is None
    assert failure_kind("error", error("Invalid arguments for tool 'x'"), sp) is None
    assert failure_kind("timeout", error("timed out"), sp) == "timeout"
    assert failure_kind("ok", {"content": []}, sp) is None
