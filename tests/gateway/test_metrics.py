"""`/metrics` in the Prometheus text format, counting what happened."""

from __future__ import annotations

from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import local_http
from tests.helpers.procs import GatewayProcess


def samples(gateway: GatewayProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = local_http.get(gateway.base + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def test_metrics_count_calls_by_tool_and_outcome(gateway: GatewayProcess) -> None:
    before = samples(gateway)
    async with Client(StreamableHttpTransport(gateway.base + "/mcp")) as client:
        for _ in range(3):
            await client.call_tool("remote_echo", {"text": "x"})
        await client.call_tool("remote_add", {"a": "x", "b": 1}, raise_on_error=False)
    after = samples(gateway)
    ok = ("mcp_gateway_tool_calls_total", (("outcome", "ok"), ("tool", "remote_echo")))
    invalid = ("mcp_gateway_tool_calls_total", (("outcome", "invalid_arguments"), ("tool", "remote_add")))
    assert after[ok] - before.get(ok, 0) == 3
    assert after[invalid] - before.get(invalid, 0) == 1
    assert after[("mcp_gateway_backend_up", (("backend", "remote"),))] == 1
    count = ("mcp_gateway_tool_call_seconds_count", (("backend", "remote"),))
    assert after[count] - before.get(count, 0) == 3
