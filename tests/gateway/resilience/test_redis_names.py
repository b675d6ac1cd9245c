"""A server's Redis name is its server name and a digest of its backend's entry: the same for replicas of
one entry (after `${VAR}` expansion, whatever the gateway-side fields), another for another backend; a
reload that changes the backend starts its cache and breakers afresh, and events naming a backend this
gateway does not run are ignored. No Redis needed: the names and the event mapping are the same without."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from gateway.config.loader import GatewayConfig, load_config
from gateway.config.resilience import BreakerSettings
from gateway.resilience.cache import Entry
from gateway.resilience.core import Resilience
from gateway.resilience.policy import resolve
from gateway.resilience.scope import redis_name
from tests.helpers.procs import write_config

ECHO = {"command": "python", "args": ["-m", "tests.backends.echo"], "env": {"DATA": "${DATA_DIR}"}}


def loaded(tmp_path: Path, entry: dict[str, Any], **environ: str) -> GatewayConfig:
    return load_config(write_config(tmp_path, {"echo": entry}), {"DATA_DIR": "/srv/a", **environ})


def name_of(config: GatewayConfig) -> str:
    return redis_name("echo", config.enabled_servers["echo"])


def test_the_name_follows_the_backend_not_the_gateway_side_fields(tmp_path: Path) -> None:
    base = name_of(loaded(tmp_path, ECHO))
    assert base.startswith("echo~") and len(base) == len("echo~") + 12
    assert name_of(loaded(tmp_path, ECHO)) == base  # a replica: the same entry
    gateway_side = {
        **ECHO,
        "tools": {"echo": {"description": "Says it back"}},
        "clientScopedArguments": {"text": {}},
        "statusTool": "whoami",
        "timeout": 3,
        "namespace": "e",
    }
    assert name_of(loaded(tmp_path, gateway_side)) == base
    assert name_of(loaded(tmp_path, {**ECHO, "env": {"DATA": "/srv/a"}})) == base  # expanded: the same value
    others = [
        loaded(tmp_path, ECHO, DATA_DIR="/srv/b"),  # another data dir through the environment
        loaded(tmp_path, {**ECHO, "args": ["-m", "tests.backends.faulty"]}),
        loaded(tmp_path, {**ECHO, "command": "python3"}),
        loaded(tmp_path, {**ECHO, "cwd": "/srv"}),
        loaded(tmp_path, {"url": "http://127.0.0.1:1/mcp"}),
        loaded(tmp_path, {"url": "http://127.0.0.1:1/mcp", "headers": {"X-Tenant": "b"}}),
    ]
    assert len({base, *map(name_of, others)}) == 1 + len(others)


async def _forward(call: Any, timeout: float | None) -> tuple[dict[str, Any], str]:
    raise AssertionError("no backend call in this test")


def test_a_reload_to_another_backend_starts_afresh_and_foreign_events_are_ignored(tmp_path: Path) -> None:
    config = loaded(tmp_path, ECHO)
    res: Resilience[Any] = Resilience(config.gateway, config.enabled_servers, _forward)
    old = res.scopes["echo"]
    breaker = res.breakers.get("echo", BreakerSettings())
    policy = resolve("echo", "echo", {"readOnlyHint": True}, res.servers["echo"])
    key = res.cache.key(policy, {"text": "hi"}, None)
    res.cache.l1.put(key, _entry(res.cache.gens["echo"]))
    assert res.cache.fresh(key) is not None

    # another deployment's `echo` (another name): its breaker and its writes are not ours
    res._on_remote({"k": "breaker", "n": "echo~000000000000", "s": "open", "o": time.time()})
    res._on_remote({"k": "breaker", "n": "echo", "s": "open", "o": time.time()})  # a gateway keying by server alone
    res._on_remote({"k": "gen", "n": "echo~000000000000", "g": "99"})
    assert breaker.state == "closed" and res.cache.fresh(key) is not None
    # a replica's (the same name): applied
    res._on_remote({"k": "gen", "n": old, "g": "5"})
    assert res.cache.gens["echo"] == "5" and res.cache.fresh(key) is None
    res.cache.l1.put(key, _entry("5"))

    same = loaded(tmp_path, {**ECHO, "tools": {"echo": {"description": "Says it back"}}})
    res.add_server("echo", same.enabled_servers["echo"])  # gateway-side only: the same backend
    assert res.scopes["echo"] == old and res.breakers.by_name["echo"] is breaker and res.cache.fresh(key)

    moved = loaded(tmp_path, ECHO, DATA_DIR="/srv/b")
    res.add_server("echo", moved.enabled_servers["echo"])  # a new backend under the old name
    new = res.scopes["echo"]
    assert new != old and res.by_scope == {new: "echo"}
    assert res.cache.fresh(key) is None and not res.cache.l1.entries
    assert res.breakers.by_name["echo"] is not breaker
    res._on_remote({"k": "breaker", "n": old, "s": "open", "o": time.time()})  # the old backend's replicas
    assert res.breakers.by_name["echo"].state == "closed"
    res._on_remote({"k": "breaker", "n": new, "s": "open", "o": time.time()})
    assert res.breakers.by_name["echo"].state == "open"


def _entry(gen: str) -> Entry:
    return Entry(gen, 1e18, 1e18, 10, {"content": []})
