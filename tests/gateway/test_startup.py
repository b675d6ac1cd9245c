"""What a gateway imports to start: only what its config uses (each probe runs in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers.procs import ROOT, child_env

RESILIENCE = """
import json, sys
from gateway.config.loader import load_config
from gateway.config.resilience import BreakerSettings
from gateway.resilience.core import Resilience
from gateway.routing.hub import Hub  # the whole call path, as `serve` imports it

environ = {"REDIS_URL": sys.argv[2]} if len(sys.argv) > 2 else {}
config = load_config(sys.argv[1], environ)
resilience = Resilience(config.gateway, config.enabled_servers, forward=None)
breaker = resilience.breakers.get("probe", BreakerSettings(fail_max=1))
breaker.record(breaker.settings.count[0], probe=False)  # one counted failure opens it
print(json.dumps({
    "loaded": sorted(m for m in ("redis", "opentelemetry.sdk") if m in sys.modules),
    "link": resilience.link is not None,
    "breaker": breaker.state,
}))
"""


def _probe(*argv: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", RESILIENCE, str(ROOT / "config" / "mcp.json"), *argv],
        cwd=ROOT,
        env={key: value for key, value in child_env().items() if key != "REDIS_URL"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_without_redis_a_gateway_loads_neither_redis_py_nor_the_opentelemetry_sdk() -> None:
    """pybreaker imports redis-py whenever it is installed, and redis-py the OpenTelemetry metrics SDK (~0.15-0.2 s
    of every gateway's start-up); the gateway uses neither without Redis. With Redis configured the link loads
    redis-py as before, and the breakers are the same either way."""
    assert _probe() == '{"loaded": [], "link": false, "breaker": "open"}'
    assert (
        _probe("redis://127.0.0.1:1/0") == '{"loaded": ["opentelemetry.sdk", "redis"], "link": true, "breaker": "open"}'
    )
