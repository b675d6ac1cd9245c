"""Bearer token -> `Client`: static API keys by hash, else a JWT when configured."""

from __future__ import annotations

import hmac
from typing import Any

from gateway.auth.keys import hash_token
from gateway.config.loader import AuthSettings
from gateway.guard.clients import Client, make_client


class Authenticator:
    """Bearer token -> `Client`: static API keys by hash, else a JWT when configured."""

    def __init__(self, auth: AuthSettings, keys: dict[str, str]) -> None:
        self.auth = auth
        self.keys = {digest: (digest, name) for digest, name in keys.items()}
        self.clients = {name: make_client(name, auth) for name in auth.clients}
        self._jwt_clients: dict[str, Client] = {}
        self.verifier: Any = None
        if auth.jwt is not None:
            from fastmcp.server.auth.providers.jwt import JWTVerifier

            jwt = auth.jwt
            self.verifier = JWTVerifier(
                public_key=jwt.public_key,
                jwks_uri=jwt.jwks_uri,
                issuer=jwt.issuer,
                audience=jwt.audience,
                algorithm=jwt.algorithm,
                required_scopes=jwt.required_scopes or None,
            )

    async def authenticate(self, token: str) -> Client | None:
        digest = hash_token(token)
        entry = self.keys.get(digest)
        # The lookup is by the hash of the presented token, so its timing tells nothing about a
        # valid token; the final comparison is constant-time all the same.
        if entry is not None and hmac.compare_digest(entry[0], digest):
            return self.clients[entry[1]]
        if self.verifier is None or token.count(".") != 2:
            return None
        access = await self.verifier.verify_token(token)
        if access is None:
            return None
        jwt = self.auth.jwt
        assert jwt is not None
        claim = access.claims.get(jwt.client_claim) if jwt.client_claim else access.client_id
        if not isinstance(claim, str) or not claim:
            return None
        if claim in self.clients:
            return self.clients[claim]
        if jwt.default_client is None:
            return None
        client = self._jwt_clients.get(claim)
        if client is None:
            if len(self._jwt_clients) > 10_000:
                self._jwt_clients.clear()
            client = self._jwt_clients[claim] = make_client(claim, self.auth, jwt.default_client)
        return client
