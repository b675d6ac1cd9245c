"""Authentication: bearer API keys and JWTs on /mcp, /sse, /messages/ and /metrics; /health and /ready open."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastmcp.server.auth.providers.jwt import RSAKeyPair

from gateway.auth.keys import hash_token
from tests.gateway.security.conftest import ALICE, BOB, client, clients, rpc, secured_config, tool_names
from tests.helpers.procs import GatewayProcess


def test_no_token_is_401_with_a_bearer_challenge(secured: GatewayProcess) -> None:
    response = rpc(secured, "tools/list")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer ")
    assert response.json()["error"] == "unauthorized"


def test_wrong_token_is_401_invalid_token(secured: GatewayProcess) -> None:
    for token in ("not-a-token", ALICE + "x", ALICE[:-1], hash_token(ALICE)):
        response = rpc(secured, "tools/list", token=token)
        assert response.status_code == 401, token
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
        assert response.json()["error"] == "unauthorized"


@pytest.mark.parametrize("scheme", ["Basic", "bearer", "Token"])
def test_only_the_bearer_scheme_counts(secured: GatewayProcess, scheme: str) -> None:
    response = rpc(secured, "tools/list", headers={"Authorization": f"{scheme} {ALICE}"})
    assert response.status_code == (200 if scheme == "bearer" else 401)


def test_every_mcp_endpoint_and_metrics_need_a_token(secured: GatewayProcess) -> None:
    with httpx.Client(base_url=secured.base, timeout=10) as http:
        assert http.get("/metrics").status_code == 401
        assert http.get("/metrics", headers={"Authorization": f"Bearer {ALICE}"}).status_code == 200
        assert http.get("/sse").status_code == 401
        assert http.post("/messages/?session_id=0123", content=b"{}").status_code == 401
        assert http.get("/mcp").status_code == 401
        assert http.delete("/mcp").status_code == 401
        assert http.get("/health").status_code == 200
        assert http.get("/ready").status_code == 200


async def test_a_valid_token_gets_through_every_transport(secured: GatewayProcess) -> None:
    for transport, mode in [("http", "auto"), ("http", "legacy"), ("sse", "legacy")]:
        async with client(secured, ALICE, transport, mode) as session:
            result = await session.call_tool("local_echo", {"text": transport})
            assert result.content[0].text == transport
    with pytest.raises(Exception):  # noqa: B017  a real client without a token is turned away at connect
        async with client(secured, None) as session:
            await session.list_tools()


def test_revoked_token_after_restart(tmp_path: Path) -> None:
    config = secured_config(tmp_path, with_leaky=False)
    gateway = GatewayProcess(config, ECHO_API_TOKEN="x" * 16)
    try:
        assert rpc(gateway, "tools/list", token=BOB).status_code == 200
    finally:
        gateway.stop()
    remaining = clients()
    del remaining["bob"]
    secured_config(tmp_path, {"clients": remaining}, with_leaky=False)  # bob's key is revoked
    gateway = GatewayProcess(config, ECHO_API_TOKEN="x" * 16)
    try:
        assert rpc(gateway, "tools/list", token=BOB).status_code == 401
        assert rpc(gateway, "tools/list", token=ALICE).status_code == 200
    finally:
        gateway.stop()


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, RSAKeyPair]]:
    """One gateway for the two tests below: API keys from the environment and a tokens file (alice, bob)
    beside JWTs from an identity provider (carol, and `contractor` for subjects not listed). Each test
    only lists tools as its own clients, so neither sees the other's state."""
    directory = tmp_path_factory.mktemp("keyed")
    tokens_file = directory / "tokens.json"
    tokens_file.write_text(f'{{"bob": "{hash_token(BOB)}"}}')
    keys = RSAKeyPair.generate()
    auth = {
        "clients": {
            "alice": {},
            "bob": {"allow": ["local_echo"]},
            "carol": {"allow": ["local_echo"]},
            "contractor": {"allow": ["local_add"]},
        },
        "tokens_file": str(tokens_file),
        "jwt": {
            "public_key": keys.public_key,
            "issuer": "https://idp.example.com",
            "audience": "mcp-gateway",
            "default_client": "contractor",
        },
    }
    gateway = GatewayProcess(
        secured_config(directory, auth, with_leaky=False),
        ECHO_API_TOKEN="x" * 16,
        MCP_GATEWAY_TOKEN_ALICE=hash_token(ALICE),
    )
    try:
        gateway.wait_backends_up()
        yield gateway, keys
    finally:
        gateway.stop()


def test_token_hashes_from_env_and_file(keyed: tuple[GatewayProcess, RSAKeyPair]) -> None:
    gateway, _ = keyed
    assert "local_add" in tool_names(rpc(gateway, "tools/list", token=ALICE))
    assert tool_names(rpc(gateway, "tools/list", token=BOB)) == {"local_echo"}
    assert rpc(gateway, "tools/list", token="y" * 40).status_code == 401


def test_jwt_from_an_identity_provider(keyed: tuple[GatewayProcess, RSAKeyPair]) -> None:
    gateway, keys = keyed

    def token(subject: str, **kwargs: object) -> str:
        options: dict[str, object] = {"issuer": "https://idp.example.com", "audience": "mcp-gateway"}
        options.update(kwargs)
        return keys.create_token(subject=subject, **options)  # type: ignore[arg-type]

    assert tool_names(rpc(gateway, "tools/list", token=token("carol"))) == {"local_echo"}
    # a subject not listed gets the default client's policy
    assert tool_names(rpc(gateway, "tools/list", token=token("dave"))) == {"local_add"}
    assert rpc(gateway, "tools/list", token=token("carol", audience="other")).status_code == 401
    assert rpc(gateway, "tools/list", token=token("carol", issuer="https://evil")).status_code == 401
    assert rpc(gateway, "tools/list", token=token("carol", expires_in_seconds=-600)).status_code == 401
    other = RSAKeyPair.generate()
    forged = other.create_token(subject="carol", issuer="https://idp.example.com", audience="mcp-gateway")
    assert rpc(gateway, "tools/list", token=forged).status_code == 401
