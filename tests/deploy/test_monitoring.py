"""deploy/monitoring: the alert rules pass `promtool check rules` and their unit tests (`promtool test
rules`), and every metric the rules and the Grafana dashboard read is one a real gateway exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helpers import local_http
from tests.helpers.procs import ROOT, GatewayProcess, stdio_echo_server, write_config
from tests.ops.test_published import memory_server

MONITORING = ROOT / "deploy" / "monitoring"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus)")
METRIC = re.compile(r"\b(mcp_gateway_[a-z_]+)")
FIGURE = re.compile(r'figure=~?"([^"]+)"')  # the published figures (statusTool) a rule or panel reads
SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


@needs_promtool
def test_the_rules_are_valid() -> None:
    done = subprocess.run([PROMTOOL, "check", "rules", str(MONITORING / "alerts.yml")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_each_alert_fires_when_it_should_and_only_then() -> None:
    done = subprocess.run(
        [PROMTOOL, "test", "rules", "alerts.test.yml"], cwd=MONITORING, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    alerts = {
        rule["alert"]
        for group in yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    tested = {
        case["alertname"]
        for test in yaml.safe_load((MONITORING / "alerts.test.yml").read_text())["tests"]
        for case in test["alert_rule_test"]
    }
    assert alerts == tested  # no alert without a test


def used_metrics() -> tuple[set[str], set[str]]:
    """The metric names and the published figures the rules and the dashboard read."""
    rules = (MONITORING / "alerts.yml").read_text()
    recorded = set(re.findall(r"record: (\S+)", rules))
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    for expr in exprs:
        assert METRIC.search(expr) or any(name in expr for name in recorded), expr
    text = rules + "\n".join(exprs)
    figures = {name for found in FIGURE.findall(text) for name in found.split("|")}
    return set(METRIC.findall(text)), figures


def test_every_metric_used_is_exported(tmp_path: Path) -> None:
    """Every metric, and every figure ai_memory is expected to publish (its statusTool, as config/mcp.json
    sets it), is in a real gateway's /metrics (the oldest-age figures only while something is pending)."""
    statuses = json.loads((ROOT / "config" / "mcp.json").read_text())["mcpServers"]["ai_memory"]["statusTool"]
    memory = {**memory_server(tmp_path / "data"), "statusTool": statuses}
    config = write_config(tmp_path, {"local": stdio_echo_server(), "ai_memory": memory}, {"status_interval": 0.2})
    gateway = GatewayProcess(config)
    try:
        gateway.wait_for(lambda health: (health["backends"]["ai_memory"].get("published") or {}).get("figures"), 60)
        modern = "2026-07-28"
        envelope = {"io.modelcontextprotocol/protocolVersion": modern, "io.modelcontextprotocol/clientCapabilities": {}}
        params = {"name": "local_echo", "arguments": {"text": "x"}, "_meta": envelope}
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
        headers = {
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": modern,
            "Mcp-Method": "tools/call",
            "Mcp-Name": "local_echo",
        }
        local_http.post(gateway.base + "/mcp", json=body, headers=headers, timeout=30)
        exported = local_http.get(gateway.base + "/metrics", timeout=10).text
    finally:
        gateway.stop()
    names = {line.split("{")[0].split(" ")[0] for line in exported.splitlines() if line and not line.startswith("#")}
    families = set(re.findall(r"^# TYPE (\S+)", exported, re.M))
    known = names | families | {family + suffix for family in families for suffix in SUFFIXES}
    metric_names, figure_names = used_metrics()
    missing = sorted(name for name in metric_names if name not in known)
    assert not missing, f"deploy/monitoring reads metrics the gateway does not export: {missing}"
    published = set(re.findall(r'^mcp_gateway_backend_status\{backend="ai_memory",figure="([^"]+)"\}', exported, re.M))
    absent = sorted(name for name in figure_names - published if not name.endswith("oldest_age_s"))
    assert not absent, f"deploy/monitoring reads figures ai_memory does not publish: {absent}"
    assert {"l3.outbox_pending", "l2.index_lag.pending", "l3.dead_letters"} <= figure_names
