"""Client API keys: token hashes from config, `MCP_GATEWAY_TOKEN_<CLIENT>` and `tokens_file`, resolved once at
start-up; and what counts as a loopback bind."""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Mapping
from pathlib import Path

from gateway.config.loader import AuthSettings, ConfigError, normalize_token_hash

TOKEN_ENV_PREFIX = "MCP_GATEWAY_TOKEN_"


def hash_token(token: str) -> str:
    """The SHA-256 hex digest stored in config for a bearer token."""
    return hashlib.sha256(token.encode()).hexdigest()


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (what `serve` may bind without auth)."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_keys(auth: AuthSettings, file: str, environ: Mapping[str, str]) -> dict[str, str]:
    """token hash -> client name, from config, `MCP_GATEWAY_TOKEN_<CLIENT>` env variables and `tokens_file`."""
    sources: list[tuple[str, str, str]] = []  # (hash, client, where)
    for name, entry in auth.clients.items():
        for digest in entry.hashes:
            sources.append((digest, name, f"$.gateway.auth.clients.{name}.token_sha256"))
        variable = TOKEN_ENV_PREFIX + name.upper().replace("-", "_")
        for item in filter(None, (part.strip() for part in environ.get(variable, "").split(","))):
            try:
                sources.append((normalize_token_hash(item), name, f"env {variable}"))
            except ValueError as error:
                raise ConfigError(file, f"env {variable}", str(error)) from None
    if auth.tokens_file:
        where = f"$.gateway.auth.tokens_file ({auth.tokens_file})"
        try:
            document = json.loads(Path(auth.tokens_file).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ConfigError(file, where, f"cannot read a JSON object: {error}") from None
        if not isinstance(document, dict):
            raise ConfigError(file, where, "must hold a JSON object {client: hash or [hashes]}")
        for name, value in document.items():
            if name not in auth.clients:
                raise ConfigError(file, where, f"client {name!r} is not in gateway.auth.clients")
            for listed in [value] if isinstance(value, str) else value if isinstance(value, list) else [None]:
                try:
                    sources.append((normalize_token_hash(str(listed)), name, where))
                except ValueError as error:
                    raise ConfigError(file, f"{where}.{name}", str(error)) from None
    keys: dict[str, str] = {}
    for digest, name, where in sources:
        if keys.setdefault(digest, name) != name:
            raise ConfigError(file, where, f"the same token hash is given to clients {keys[digest]!r} and {name!r}")
    if auth.jwt is None:
        keyless = sorted(set(auth.clients) - set(keys.values()))
        if keyless:
            variable = TOKEN_ENV_PREFIX + keyless[0].upper().replace("-", "_")
            raise ConfigError(
                file,
                f"$.gateway.auth.clients.{keyless[0]}",
                f"no token: set token_sha256, env {variable} or tokens_file (make one with `mcp-gateway hash-token`)",
            )
    return keys


def auth_enabled(auth: AuthSettings | None) -> bool:
    return auth is not None and (bool(auth.clients) or auth.jwt is not None)
