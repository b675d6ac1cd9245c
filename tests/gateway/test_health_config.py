"""`/health` says which configuration the gateway runs: the hash of the validated config and when it was
loaded (the first step of live reload, issue 15)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers.procs import GatewayProcess, stdio_echo_server, write_config


def test_health_shows_the_loaded_configs_hash_and_time(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"local": stdio_echo_server()})
    hashes = []
    for env in ({}, {}, {"MCP_GATEWAY_CALL_TIMEOUT": "7"}):
        gateway = GatewayProcess(config, **env)
        try:
            loaded = gateway.health()["config"]
        finally:
            gateway.stop()
        assert re.fullmatch(r"[0-9a-f]{64}", loaded["hash"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", loaded["loaded_at"])
        hashes.append(loaded["hash"])
    assert hashes[0] == hashes[1]  # the same file and environment: the same configuration
    assert hashes[2] != hashes[0]  # an env override changes what runs, so the hash
