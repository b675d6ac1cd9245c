"""Secrets out of error texts and logs: the `Redactor` (known secret values, bearer tokens, `Authorization`
values) and the secrets it is built from. Used by every transport, with or without auth; the log side
(every record, stdio backends' stderr) is installed through `gateway.ops.logs`."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from gateway.config.loader import ENV_REFERENCE, GatewayConfig

REDACTED = "[REDACTED]"
_SECRET_NAME = re.compile(r"TOKEN|SECRET|KEY|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
_MIN_SECRET_LENGTH = 8


# ---------------------------------------------------------------------------------------------- redaction


class Redactor:
    """Replaces known secret values, bearer tokens and `Authorization` header values with [REDACTED]."""

    _GENERIC = (
        r"mgw_[A-Za-z0-9_-]{16,}"  # gateway client tokens (`mcp-gateway hash-token`), wherever they appear
        r"|(?:(?<=bearer )|(?<=basic ))[A-Za-z0-9._~+/=-]{8,}"
        r"|(?:(?<=authorization: )|(?<=authorization=)|(?<=\"authorization\": \"))(?!bearer |basic )[^\s\"',}]{6,}"
    )

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.update(secrets)

    # Text every match of the pattern starts with, or follows (the look-behinds), in lower case.
    _TRIGGERS = ("mgw_", "bearer ", "basic ", "authorization: ", "authorization=", '"authorization": "')

    def update(self, secrets: Iterable[str]) -> None:
        """Scrub these secrets from now on (a config reload's), everywhere this redactor is used."""
        self.secrets = sorted({s for s in secrets if len(s) >= _MIN_SECRET_LENGTH}, key=len, reverse=True)
        literal = "|".join(re.escape(s) for s in self.secrets)
        self.pattern = re.compile(f"{literal}|{self._GENERIC}" if literal else self._GENERIC, re.IGNORECASE)
        # For ASCII text and ASCII secrets a case-insensitive match is a match of the lower-cased text, so text
        # without any trigger can be returned as is: a few substring searches instead of the pattern's scan
        # (the look-behinds defeat the regex engine's own skipping, ~70 µs for one audit line).
        ascii_secrets = all(secret.isascii() for secret in self.secrets)
        self._triggers = (*self._TRIGGERS, *(s.lower() for s in self.secrets)) if ascii_secrets else None

    def __call__(self, text: str) -> str:
        if self._triggers is not None and text.isascii():
            lowered = text.lower()
            if not any(trigger in lowered for trigger in self._triggers):
                return text
        return self.pattern.sub(REDACTED, text)

    def result(self, result: dict[str, Any]) -> dict[str, Any]:
        """Scrub the text blocks of an error `CallToolResult` (in place)."""
        for block in result.get("content") or ():
            if isinstance(block, dict) and isinstance(block.get("text"), str):
                block["text"] = self(block["text"])
        return result


def collect_secrets(
    config: GatewayConfig, raw_servers: Mapping[str, Any] | None, environ: Mapping[str, str]
) -> set[str]:
    """Values to scrub: env vars referenced (`${VAR}`) in servers' `env`/`headers`/`args`, header values,
    server env values under secret-looking names, and every `*TOKEN*`/`*SECRET*`/`*KEY*`/`*PASSWORD*`
    variable of the gateway's environment."""
    secrets: set[str] = set()
    for name, value in environ.items():
        if _SECRET_NAME.search(name):
            secrets.add(value)
    for server in (raw_servers or {}).values():
        if not isinstance(server, dict):
            continue
        args = server.get("args")
        values = [*(server.get("env") or {}).values(), *(server.get("headers") or {}).values()]
        values += args if isinstance(args, list) else []
        for value in values:
            if isinstance(value, str):
                for match in ENV_REFERENCE.finditer(value):
                    if environ.get(match.group(1)):
                        secrets.add(environ[match.group(1)])
    for server in config.mcp_servers.values():
        secrets.update(server.headers.values())
        for header_value in server.headers.values():
            secrets.add(header_value.split(" ", 1)[-1])
        secrets.update(value for key, value in server.env.items() if _SECRET_NAME.search(key))
    return {secret for secret in secrets if len(secret) >= _MIN_SECRET_LENGTH}
