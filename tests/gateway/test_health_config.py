"""`/health` says which configuration the gateway runs: the hash of the validated config and when it was
loaded (the first step of live reload, issue 15)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers.procs import GatewayProcess, stop_gateways, write_config


def test_health_shows_the_loaded_configs_hash_and_time(tmp_path: Path) -> None:
    # no backend: the hash covers the whole validated config, servers or not, and three echo backends would
    # only add their start-up
    config = write_config(tmp_path, {})
    gateways = [GatewayProcess(config, wait_path=None, **env) for env in ({}, {}, {"MCP_GATEWAY_CALL_TIMEOUT": "7"})]
    try:  # started together, so they come up in parallel
        for gateway in gateways:
            gateway.wait_ready()
        loaded = [gateway.health()["config"] for gateway in gateways]
    finally:
        stop_gateways(*gateways)
    for each in loaded:
        assert re.fullmatch(r"[0-9a-f]{64}", each["hash"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", each["loaded_at"])
    hashes = [each["hash"] for each in loaded]
    assert hashes[0] == hashes[1]  # the same file and environment: the same configuration
    assert hashes[2] != hashes[0]  # an env override changes what runs, so the hash
