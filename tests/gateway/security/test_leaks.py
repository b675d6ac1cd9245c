"""No leaks (issue 16, point 6): introspection shows a client only what its allow list lets it see and is
Host-guarded; gateway tokens and configured secrets are redacted in logs, audit and backend stderr; no
framework-internal `_meta` reaches clients."""

from __future__ import annotations

import time
from pathlib import Path

from gateway.auth.keys import hash_token
from gateway.guard.redaction import REDACTED, Redactor
from tests.gateway.security.conftest import ALICE, audit_lines, clients, rpc, secured_config
from tests.helpers import local_http
from tests.helpers.procs import ROOT, GatewayProcess, stdio_echo_server, write_config

NARROW = "narrow-0123456789abcdefghijklmnopqrstuvwxyz"
GATEWAY_TOKEN = "mgw_" + "Zq3" * 15
ARG_SECRET = "conn-string-5f1e9a7c3b"
PRINTS_ARGS = (
    "import sys, runpy; print('started with', sys.argv[1:], file=sys.stderr, flush=True); sys.argv[1:] = []; "
    "runpy.run_module('tests.backends.echo', run_name='__main__')"
)


def test_metrics_and_health_show_only_what_the_allow_list_shows(tmp_path: Path) -> None:
    auth = {"clients": {**clients(), "narrow": {"token_sha256": hash_token(NARROW), "allow": ["local_echo"]}}}
    gateway = GatewayProcess(secured_config(tmp_path, auth), ECHO_API_TOKEN="x" * 16)
    try:
        rpc(gateway, "tools/call", {"name": "leaky_leak", "arguments": {}}, token=ALICE)
        rpc(gateway, "tools/call", {"name": "local_whoami", "arguments": {}}, token=ALICE)
        full = local_http.get(gateway.base + "/metrics", headers={"Authorization": f"Bearer {ALICE}"}).text
        assert 'tool="leaky_leak"' in full and 'backend="leaky"' in full and 'tool="local_whoami"' in full
        narrow = local_http.get(gateway.base + "/metrics", headers={"Authorization": f"Bearer {NARROW}"})
        assert narrow.status_code == 200
        assert "leaky" not in narrow.text and "local_whoami" not in narrow.text
        assert 'backend="local"' in narrow.text
        health = local_http.get(gateway.base + "/health", headers={"Authorization": f"Bearer {NARROW}"}).json()
        assert set(health["backends"]) == {"local"} and set(health["breakers"]) == {"local"}
    finally:
        gateway.stop()


def test_introspection_is_host_guarded_on_loopback(tmp_path: Path) -> None:
    gateway = GatewayProcess(write_config(tmp_path, {"local": stdio_echo_server()}))
    try:
        for path in ("/metrics", "/health"):
            rebound = local_http.get(gateway.base + path, headers={"Host": "evil.example"})
            assert rebound.status_code == 421, (path, rebound.status_code)
            assert local_http.get(gateway.base + path).status_code == 200
    finally:
        gateway.stop()


def test_tokens_and_arg_secrets_are_redacted_and_no_fastmcp_meta(tmp_path: Path) -> None:
    printer = {"command": "python", "args": ["-c", PRINTS_ARGS, "${UPSTREAM_CONN}"], "env": {"PYTHONPATH": str(ROOT)}}
    config = secured_config(tmp_path, {"clients": clients()}, printer=printer)
    document = config.read_text().replace('"auth"', '"audit": {"arguments": true}, "auth"')
    config.write_text(document)
    # INFO: a backend's stderr line without a level word is relayed at INFO
    gateway = GatewayProcess(config, ECHO_API_TOKEN="x" * 16, UPSTREAM_CONN=ARG_SECRET, MCP_GATEWAY_LOG_LEVEL="INFO")
    try:
        response = rpc(
            gateway,
            "tools/call",
            {"name": "local_echo", "arguments": {"text": f"use {GATEWAY_TOKEN}"}},
            token=ALICE,
            headers={"X-Request-Id": ARG_SECRET},  # a client's own request id is scrubbed on the audit line too
        )
        result = response.json()["result"]
        assert "fastmcp" not in result.get("_meta", {}), result
        deadline = time.monotonic() + 30
        while not any(line["tool"] == "local_echo" for line in audit_lines(gateway.stderr)):
            assert time.monotonic() < deadline, "no audit line"
            time.sleep(0.05)
    finally:
        log = gateway.stop()
    assert "started with" in log  # the backend did print its args
    assert ARG_SECRET not in log and GATEWAY_TOKEN not in log
    lines = [line for line in audit_lines(log) if line["tool"] == "local_echo"]
    assert lines and lines[0]["arguments"] == {"text": "use [REDACTED]"}


LONG_S = "\u017f"  # a long s, which a case-insensitive pattern takes for an s


def test_redactor_scrubs_the_same_with_and_without_its_ascii_shortcut() -> None:
    """Text without any trigger is returned as is (ASCII text, ASCII secrets); anything else still goes through
    the pattern, with its case-insensitive matching."""
    ascii_secrets, unicode_secret = Redactor(["s3cr3t-value-1"]), Redactor([f"pa{LONG_S}sword-long"])
    assert ascii_secrets("tools/call x: ok client=- ms=0.9") == "tools/call x: ok client=- ms=0.9"
    assert ascii_secrets("key S3CR3T-VALUE-1 and Bearer abcdefgh12") == f"key {REDACTED} and Bearer {REDACTED}"
    assert ascii_secrets("mgw_abcdefghijklmnopqr Authorization: xyz123456") == f"{REDACTED} Authorization: {REDACTED}"
    assert ascii_secrets(f"ba{LONG_S}ic abcdefgh12") == f"ba{LONG_S}ic {REDACTED}"  # not ASCII: the pattern decides
    assert unicode_secret("the PASSWORD-LONG") == f"the {REDACTED}"
