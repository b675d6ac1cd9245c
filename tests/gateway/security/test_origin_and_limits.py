"""Origin validation (DNS rebinding) and per-client rate limits, in-process and shared through Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.auth.keys import hash_token
from tests.gateway.security.conftest import ALICE, LIMITED, client, clients, rpc, secured_config
from tests.helpers.procs import GatewayProcess, stop_gateways
from tests.helpers.redis_proc import RedisProcess

RETRY_AFTER = "mcp-gateway/retryAfterSeconds"


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "http://localhost.evil.example:8080",
        "null",
        "https://127.0.0.1.nip.io",
        "file://",
        "http://[::1",
    ],
)
def test_bad_origin_is_403_even_with_a_good_token(secured: GatewayProcess, origin: str) -> None:
    response = rpc(secured, "tools/list", token=ALICE, headers={"Origin": origin})
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden_origin"
    with httpx.Client(base_url=secured.base, timeout=10, headers={"Origin": origin}) as http:
        assert http.get("/sse").status_code == 403
        assert http.post("/messages/?session_id=1", content=b"{}").status_code == 403


def test_loopback_origin_and_no_origin_pass(secured: GatewayProcess) -> None:
    assert rpc(secured, "tools/list", token=ALICE, headers={"Origin": f"http://localhost:{secured.port}"}).is_success
    assert rpc(secured, "tools/list", token=ALICE, headers={"Origin": "http://127.0.0.1:6274"}).is_success
    assert rpc(secured, "tools/list", token=ALICE).is_success


# `limited` and `limited_sse`: the same rate limit, one bucket for each rate-limit test, so they can share
# one gateway without spending each other's burst
LIMITED_SSE = "limited-sse-0123456789abcdefghijklmnopqrstuvwxyz"


@pytest.fixture(scope="module")
def limits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """One gateway with configured origins and two rate-limited clients, for the tests below that need a
    config of their own: each uses its own client (or only reads), so none sees another's state."""
    every = clients()
    every["limited_sse"] = {**every["limited"], "token_sha256": hash_token(LIMITED_SSE)}
    auth = {"clients": every, "allowed_origins": ["https://app.example.com"]}
    gateway = GatewayProcess(
        secured_config(tmp_path_factory.mktemp("limits"), auth, with_leaky=False), ECHO_API_TOKEN="x" * 16
    )
    try:
        gateway.wait_backends_up()
        yield gateway
    finally:
        gateway.stop()


def test_configured_origins_replace_the_default(limits: GatewayProcess) -> None:
    gateway = limits
    good = rpc(gateway, "tools/list", token=ALICE, headers={"Origin": "https://app.example.com"})
    assert good.status_code == 200
    assert rpc(gateway, "tools/list", token=ALICE, headers={"Origin": "https://app.example.com:443"}).is_success
    assert rpc(gateway, "tools/list", token=ALICE, headers={"Origin": "http://app.example.com"}).status_code == 403
    assert rpc(gateway, "tools/list", token=ALICE, headers={"Origin": "http://localhost:3000"}).status_code == 403


def echo(gateway: GatewayProcess, text: str, token: str = LIMITED) -> dict:
    response = rpc(gateway, "tools/call", {"name": "local_echo", "arguments": {"text": text}}, token=token)
    assert response.status_code == 200
    return response.json()["result"]


def assert_limited(result: dict) -> None:
    assert result["isError"] is True
    assert "Rate limit exceeded for client 'limited'" in result["content"][0]["text"]
    assert "retry after" in result["content"][0]["text"]
    assert 0 < result["_meta"][RETRY_AFTER] <= 60


def test_rate_limit_burst_in_process(limits: GatewayProcess) -> None:
    gateway = limits
    assert [echo(gateway, str(i))["content"][0]["text"] for i in range(3)] == ["0", "1", "2"]
    assert_limited(echo(gateway, "3"))
    assert echo(gateway, "alice is not limited", ALICE)["content"][0]["text"] == "alice is not limited"
    # tools/list is not limited
    assert rpc(gateway, "tools/list", token=LIMITED).json()["result"]["tools"]


async def test_rate_limit_over_the_fastmcp_path(limits: GatewayProcess) -> None:
    async with client(limits, LIMITED_SSE, "sse", "legacy") as session:
        for i in range(3):
            assert (await session.call_tool("local_echo", {"text": str(i)})).content[0].text == str(i)
        limited = await session.call_tool("local_echo", {"text": "x"}, raise_on_error=False)
        assert limited.is_error and "retry after" in limited.content[0].text


def test_rate_limit_shared_by_replicas_through_redis(tmp_path: Path, redis_server: RedisProcess) -> None:
    config = secured_config(tmp_path, with_leaky=False)
    first, second = (
        GatewayProcess(config, wait_path=None, ECHO_API_TOKEN="x" * 16, REDIS_URL=redis_server.url) for _ in range(2)
    )
    try:  # started together, so they come up in parallel
        first.wait_ready()
        second.wait_ready()
        assert not echo(first, "1").get("isError")
        assert not echo(second, "2").get("isError")
        assert not echo(first, "3").get("isError")
        assert_limited(echo(second, "4"))  # the bucket of 3 is shared
        assert_limited(echo(first, "5"))
        redis_server.kill()  # Redis gone: each replica limits on its own instead of failing calls
        assert echo(first, "alice", ALICE)["content"][0]["text"] == "alice"
    finally:
        stop_gateways(first, second)


async def test_rate_limit_buckets_are_kept_apart_by_the_redis_prefix(redis_server: RedisProcess) -> None:
    """Two deployments sharing one Redis (`gateway.redis.prefix`) do not spend each other's buckets."""
    from gateway.guard.ratelimit import RedisBuckets

    blue, blue_again, green = (RedisBuckets(redis_server.url, prefix) for prefix in ("blue", "blue", "green"))
    try:
        assert [await blue.take("alice", 0.001, 2) for _ in range(2)] == [0.0, 0.0]
        assert await blue_again.take("alice", 0.001, 2) > 0  # same prefix: the same bucket, now empty
        assert await green.take("alice", 0.001, 2) == 0.0
        assert not (blue.fallback.buckets or green.fallback.buckets)  # Redis answered every time
    finally:
        for buckets in (blue, blue_again, green):
            await buckets.client.aclose()
