"""Exposed tool names: `<server>_<tool>`, valid for MCP, collisions resolved deterministically."""

from __future__ import annotations

from typing import Any

from gateway.backends.session import Backend
from gateway.config.loader import GatewaySettings, ServerConfig
from gateway.routing.catalog import TOOL_NAME, Catalog, exposed_name


def backend(name: str, *tools: str) -> Backend:
    b = Backend(name, ServerConfig(command="x"), GatewaySettings())
    b.tools = [{"name": t, "inputSchema": {"type": "object", "properties": {"n": {"type": "integer"}}}} for t in tools]
    return b


def test_names_are_prefixed_and_valid() -> None:
    assert exposed_name("slack", "post_message") == "slack_post_message"
    assert exposed_name("my.server", "do thing") == "my_server_do_thing"
    long = exposed_name("s" * 40, "t" * 40)
    assert len(long) <= 64 and TOOL_NAME.match(long)
    assert long != exposed_name("s" * 40, "t" * 39 + "u")


def test_collision_is_resolved_in_config_order() -> None:
    catalog = Catalog()
    first, second = backend("a_b", "c"), backend("a", "b_c")
    catalog.rebuild([first, second])
    assert catalog.resolve("a_b_c").backend is first  # type: ignore[union-attr]
    assert catalog.resolve("a_b_c_2").backend is second  # type: ignore[union-attr]
    assert catalog.resolve("a_b_c_2").tool == "b_c"  # type: ignore[union-attr]
    catalog.rebuild([first, second])
    assert [t["name"] for t in catalog.tools] == ["a_b_c", "a_b_c_2"]


def test_rebuild_reports_change_only_when_list_changes() -> None:
    catalog = Catalog()
    b = backend("s", "one")
    assert catalog.rebuild([b]) is True
    assert catalog.rebuild([b]) is False
    b.tools = [*b.tools, {"name": "two"}]
    assert catalog.rebuild([b]) is True
    assert catalog.version == 2


def test_argument_validation_against_input_schema() -> None:
    catalog = Catalog()
    catalog.rebuild([backend("s", "t")])
    route = catalog.resolve("s_t")
    assert route is not None
    assert route.validation_error({"n": 3}) is None
    problem: Any = route.validation_error({"n": "three"})
    assert "s_t" in problem and "n" in problem and "integer" in problem


def test_namespace_option_replaces_or_drops_the_prefix() -> None:
    assert exposed_name("", "test_simple_text") == "test_simple_text"
    catalog = Catalog()
    plain = Backend("conformance", ServerConfig(command="x", namespace=""), GatewaySettings())
    plain.tools = [{"name": "echo"}]
    renamed = Backend("slack", ServerConfig(command="x", namespace="chat"), GatewaySettings())
    renamed.tools = [{"name": "post"}]
    default = backend("gong", "calls")
    assert (plain.namespace, renamed.namespace, default.namespace) == ("", "chat", "gong")
    catalog.rebuild([plain, renamed, default])
    assert [t["name"] for t in catalog.tools] == ["echo", "chat_post", "gong_calls"]
    assert catalog.resolve("echo").tool == "echo"  # type: ignore[union-attr]
