"""Config loading: the mcpServers format, env expansion, and errors that name file, path and problem."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config.loader import ConfigError, load_config, parse_config
from tests.helpers.procs import ROOT, child_env


def write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(document))
    return path


def test_cursor_style_config_loads(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "mcpServers": {
                "local": {"command": "npx", "args": ["-y", "some-server"], "env": {"KEY": "v"}, "cwd": "/tmp"},
                "remote": {"url": "https://example.test/mcp", "headers": {"X-Key": "k"}},
                "legacy": {"url": "https://example.test/sse", "transport": "sse"},
            }
        },
    )
    config = load_config(path, environ={})
    assert [s.kind for s in config.mcp_servers.values()] == ["stdio", "http", "sse"]
    assert config.mcp_servers["local"].env == {"KEY": "v"}
    assert config.gateway.call_timeout == 30


def test_env_references_expand_with_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "mcpServers": {
                "s": {"command": "x", "env": {"A": "${TOKEN}", "B": "${MISSING:-fallback}", "C": "pre-${TOKEN}-post"}}
            }
        },
    )
    config = load_config(path, environ={"TOKEN": "t0k"})
    assert config.mcp_servers["s"].env == {"A": "t0k", "B": "fallback", "C": "pre-t0k-post"}


def test_gateway_settings_overridden_by_env(tmp_path: Path) -> None:
    path = write(tmp_path, {"mcpServers": {}, "gateway": {"call_timeout": 5}})
    config = load_config(path, environ={"MCP_GATEWAY_CALL_TIMEOUT": "7.5"})
    assert config.gateway.call_timeout == 7.5


def test_nested_gateway_settings_overridden_by_env(tmp_path: Path) -> None:
    path = write(
        tmp_path, {"mcpServers": {"slack": {"command": "x"}}, "gateway": {"cache": {"ttl": 5, "stale_grace": 10}}}
    )
    config = load_config(
        path,
        environ={
            "MCP_GATEWAY_BREAKER__FAIL_MAX": "3",
            "MCP_GATEWAY_CACHE__TTL": "9.5",
            "MCP_GATEWAY_SERVERS__SLACK__CACHE__TTL": "2",
            "MCP_GATEWAY_DATA_DIR": "/tmp/elsewhere",  # not a gateway setting: left alone
            "MCP_GATEWAY_TOKEN_ALICE": "ab" * 32,
        },
    )
    assert config.gateway.breaker.fail_max == 3
    assert config.gateway.cache.ttl == 9.5 and config.gateway.cache.stale_grace == 10  # the file's other key stays
    assert config.gateway.servers["slack"].cache.ttl == 2


def test_bad_nested_env_override_names_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, {"mcpServers": {}})
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={"MCP_GATEWAY_BREAKER__FAIL_MAX": "zero"})
    message = str(caught.value)
    assert "$.gateway.breaker.fail_max" in message and "MCP_GATEWAY_BREAKER__FAIL_MAX" in message
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={"MCP_GATEWAY_RETRY__NOPE": "1"})
    assert "$.gateway.retry.nope" in str(caught.value) and "unknown key" in str(caught.value)


JWT = {"public_key": "-----BEGIN PUBLIC KEY-----x-----END PUBLIC KEY-----"}


@pytest.mark.parametrize(
    ("document", "path", "problem"),
    [
        ({"mcpServers": {"s": {"command": "x", "bogus": 1}}}, "$.mcpServers.s.bogus", "unknown key"),
        ({"mcpServers": {"s": {"command": "x", "args": "not-a-list"}}}, "$.mcpServers.s.args", "list"),
        ({"mcpServers": {"s": {"args": []}}}, "$.mcpServers.s", "exactly one of 'command'"),
        ({"mcpServers": {"s": {"url": "ftp://x"}}}, "$.mcpServers.s", "http://"),
        ({"mcpServers": {}, "gateway": {"call_timeout": -1}}, "$.gateway.call_timeout", "greater than 0"),
        ({"mcpServers": {}, "gateway": {"nope": 1}}, "$.gateway.nope", "unknown key"),
        ({"servers": {}}, "$.mcpServers", "required"),
        ({"mcpServers": {"bad name!": {"command": "x"}}}, "$.mcpServers", "must match"),
        ({"mcpServers": {"s": {"command": "${UNSET_VAR_FOR_TEST}"}}}, "$.mcpServers.s.command", "UNSET_VAR"),
        (
            {"mcpServers": {"s": {"command": "x", "clientScopedArguments": {"ns": {"lookup": {"argument": "id"}}}}}},
            "$.mcpServers.s.clientScopedArguments.ns.lookup.tool",
            "required",
        ),
        (
            {"mcpServers": {"s": {"command": "x"}}, "gateway": {"auth": {"jwt": JWT, "memory": {"servers": ["s"]}}}},
            "$.gateway.auth.memory.servers[0]",
            "declares no clientScopedArguments",
        ),
        (
            {"mcpServers": {}, "gateway": {"auth": {"jwt": JWT, "memory": {"servers": ["nope"]}}}},
            "$.gateway.auth.memory.servers[0]",
            "no server named 'nope'",
        ),
    ],
)
def test_bad_config_names_file_path_and_problem(tmp_path: Path, document: object, path: str, problem: str) -> None:
    file = write(tmp_path, document)
    with pytest.raises(ConfigError) as raised:
        load_config(file, environ={})
    assert raised.value.file == str(file)
    assert raised.value.path == path
    assert problem in raised.value.problem


def test_invalid_json_reports_line_and_column(tmp_path: Path) -> None:
    file = tmp_path / "mcp.json"
    file.write_text('{"mcpServers": {\n  "s": {"command": "x",}\n}}')
    with pytest.raises(ConfigError, match=r"invalid JSON at line 2"):
        load_config(file, environ={})


def test_not_an_object() -> None:
    with pytest.raises(ConfigError, match="JSON object"):
        parse_config([1, 2], "inline.json", environ={})


def test_cli_exits_2_without_traceback(tmp_path: Path) -> None:
    file = write(tmp_path, {"mcpServers": {"s": {"command": "x", "extra": True}}})
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "check", "--config", str(file)],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"{file}: $.mcpServers.s.extra: unknown key" in done.stderr
    assert "Traceback" not in done.stderr


def test_shipped_config_is_valid() -> None:
    config = load_config(ROOT / "config" / "mcp.json", environ={})
    assert set(config.mcp_servers) == {"ai_memory", "hubspot", "gong", "slack"}


def test_namespace_key(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            {
                "mcpServers": {
                    "a": {"command": "x", "namespace": ""},
                    "b": {"command": "x", "namespace": "bee"},
                    "c": {"command": "x"},
                }
            },
        ),
        environ={},
    )
    assert [s.namespace for s in config.mcp_servers.values()] == ["", "bee", None]
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, {"mcpServers": {"a": {"command": "x", "namespace": "no spaces"}}}), environ={})
    assert caught.value.path == "$.mcpServers.a.namespace"
    assert "namespace" in caught.value.problem


def test_shipped_config_scopes_ai_memory_per_client() -> None:
    """ai_memory's namespaces are per client because config/mcp.json says so (the gateway names no backend)."""
    config = load_config(ROOT / "config" / "mcp.json", environ={})
    scoped = config.mcp_servers["ai_memory"].client_scoped_arguments
    assert set(scoped) == {"namespace"}
    lookup = scoped["namespace"].lookup
    assert lookup is not None and (lookup.tool, lookup.argument) == ("get_memory", "id")
    assert all(not server.client_scoped_arguments for name, server in config.mcp_servers.items() if name != "ai_memory")


def test_redis_url_comes_from_env_when_not_configured(tmp_path: Path) -> None:
    file = write(tmp_path, {"mcpServers": {}})
    assert load_config(file, environ={"REDIS_URL": "redis://r:6379/0"}).gateway.redis_url == "redis://r:6379/0"
    assert load_config(file, environ={}).gateway.redis_url is None
    configured = write(tmp_path, {"mcpServers": {}, "gateway": {"redis_url": "redis://mine/1"}})
    assert load_config(configured, environ={"REDIS_URL": "redis://r:6379/0"}).gateway.redis_url == "redis://mine/1"
