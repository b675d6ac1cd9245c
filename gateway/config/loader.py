"""Load and validate `config/mcp.json`: the `mcpServers` format of Cursor and Claude Desktop plus a
`gateway` section.

Every problem is reported as a `ConfigError` naming the file, the JSON path and what is wrong.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from gateway.config.features import (
    CacheHintSettings,
    DiscoverySettings,
    ProfileSettings,
    ToolOverride,
    check_profile_names,
)
from gateway.config.resilience import (
    BreakerSettings,
    BulkheadSettings,
    CacheSettings,
    RedisSettings,
    RetrySettings,
    ServerSettings,
)

SERVER_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,48}$")
NAMESPACE = re.compile(r"^[a-zA-Z0-9_-]{0,48}$")
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
ENV_PREFIX = "MCP_GATEWAY_"


class ConfigError(Exception):
    """A configuration problem, with the file and JSON path it was found at."""

    def __init__(self, file: str | Path, path: str, problem: str) -> None:
        self.file = str(file)
        self.path = path
        self.problem = problem
        super().__init__(f"{self.file}: {path}: {problem}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ScopeLookup(_Strict):
    """How the gateway learns the scope of a record named by id: the backend's tool that reads one record by
    `argument` (its result's `structuredContent` carries the scoped argument)."""

    tool: str
    argument: str = "id"
    record: str = Field(default="record", description="what a record is called in 'not found' answers")


class ScopedArgument(_Strict):
    """One entry of a server's `clientScopedArguments`: an argument of its tools whose values are kept per
    client (see docs/security.md, "Client-scoped arguments")."""

    lookup: ScopeLookup | None = None


class ServerConfig(_Strict):
    """One entry of `mcpServers`: a stdio command or a remote URL."""

    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    transport: Literal["http", "sse", "stdio", "streamable-http"] | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    in_process: bool = Field(default=False, alias="inProcess")
    disabled: bool = False
    timeout: float | None = Field(default=None, gt=0)
    namespace: str | None = None  # prefix of exposed names; None: the server's name, "": no prefix
    tools: dict[str, ToolOverride] = Field(default_factory=dict)  # rename, re-describe or hide backend tools
    client_scoped_arguments: dict[str, ScopedArgument] = Field(default_factory=dict, alias="clientScopedArguments")
    status_tool: str | None = Field(
        default=None,
        alias="statusTool",
        description="a tool of this backend the gateway polls for the figures it publishes (gateway.ops.published)",
    )

    @field_validator("namespace")
    @classmethod
    def _namespace_chars(cls, value: str | None) -> str | None:
        if value is not None and not NAMESPACE.match(value):
            raise ValueError(f"'namespace' must match {NAMESPACE.pattern} (\"\" exposes names unprefixed)")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> ServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of 'command' (a stdio server) or 'url' (a remote server)")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"'url' must start with http:// or https://, got {self.url!r}")
        if self.command is not None and self.transport not in (None, "stdio"):
            raise ValueError("a 'command' server speaks stdio; 'transport' may only be 'stdio' here")
        if self.in_process and self.module is None:
            raise ValueError('\'inProcess\' needs a Python module server: "args": ["-m", "package.module"]')
        return self

    @property
    def kind(self) -> Literal["stdio", "http", "sse", "in-process"]:
        """How the gateway reaches this server."""
        if self.in_process:
            return "in-process"
        if self.command is not None:
            return "stdio"
        return "sse" if self.transport == "sse" else "http"

    @property
    def module(self) -> str | None:
        """The module of a `python -m module` server, if that is what this entry runs."""
        if self.command and Path(self.command).name.startswith("python") and self.args[:1] == ["-m"]:
            return self.args[1] if len(self.args) > 1 else None
        return None


CLIENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$")
TOKEN_SHA256 = re.compile(r"^[0-9a-f]{64}$")
LOOPBACK_ORIGINS = ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"]


def normalize_token_hash(value: str) -> str:
    """`sha256:<hex>` or `<hex>`, any case, to 64 lowercase hex digits; ValueError otherwise."""
    digest = value.strip().lower().removeprefix("sha256:")
    if not TOKEN_SHA256.match(digest):
        raise ValueError("must be the 64 hex digits of a SHA-256 (make one with `mcp-gateway hash-token`)")
    return digest


class RateLimitConfig(_Strict):
    """A token bucket: `per_minute` calls sustained, up to `burst` at once."""

    per_minute: float = Field(gt=0)
    burst: int | None = Field(default=None, gt=0, description="bucket size; default per_minute (at least 1)")

    @property
    def capacity(self) -> int:
        return self.burst if self.burst is not None else max(1, int(self.per_minute))


class ClientConfig(_Strict):
    """One API client: its key(s), which tools it may see and call, its rate limit."""

    token_sha256: str | list[str] | None = None
    allow: list[str] = Field(default_factory=lambda: ["*"])
    deny: list[str] = Field(default_factory=list)
    rate_limit: RateLimitConfig | None = None
    memory_owner: str | None = None

    @field_validator("token_sha256")
    @classmethod
    def _hashes(cls, value: str | list[str] | None) -> str | list[str] | None:
        if value is None:
            return None
        if isinstance(value, str):
            return normalize_token_hash(value)
        return [normalize_token_hash(item) for item in value]

    @field_validator("memory_owner")
    @classmethod
    def _owner(cls, value: str | None) -> str | None:
        if value is not None and not CLIENT_NAME.match(value):
            raise ValueError(f"must match {CLIENT_NAME.pattern}")
        return value

    @property
    def hashes(self) -> list[str]:
        if self.token_sha256 is None:
            return []
        return [self.token_sha256] if isinstance(self.token_sha256, str) else list(self.token_sha256)


class JWTConfig(_Strict):
    """Bearer JWTs from an identity provider, verified by FastMCP's `JWTVerifier`."""

    jwks_uri: str | None = None
    public_key: str | None = None
    issuer: str | list[str] | None = None
    audience: str | list[str] | None = None
    algorithm: str | None = None
    required_scopes: list[str] = Field(default_factory=list)
    client_claim: str | None = Field(default=None, description="claim naming the client; default the token's client_id")
    default_client: str | None = Field(default=None, description="policy for JWT clients not listed in `clients`")

    @model_validator(mode="after")
    def _one_key(self) -> JWTConfig:
        if (self.jwks_uri is None) == (self.public_key is None):
            raise ValueError("give exactly one of 'jwks_uri' or 'public_key'")
        return self


class MemoryIsolation(_Strict):
    """How the `clientScopedArguments` of backends (e.g. ai_memory's namespaces) are kept per client."""

    isolate: bool = True
    servers: list[str] | None = Field(default=None, description="default: every server with clientScopedArguments")
    shared_namespaces: list[str] = Field(default_factory=list, description="patterns left unprefixed")


class AuthSettings(_Strict):
    """`gateway.auth`: who may use the HTTP transports, and what each client may do."""

    clients: dict[str, ClientConfig] = Field(default_factory=dict)
    tokens_file: str | None = None
    jwt: JWTConfig | None = None
    allowed_origins: list[str] = Field(default_factory=lambda: list(LOOPBACK_ORIGINS))
    rate_limit: RateLimitConfig | None = None
    max_sessions_per_client: int = Field(
        default=100, gt=0, description="Streamable HTTP sessions one client may hold open; over it, initialize is 429"
    )
    memory: MemoryIsolation = Field(default_factory=MemoryIsolation)

    @field_validator("clients")
    @classmethod
    def _client_names(cls, clients: dict[str, ClientConfig]) -> dict[str, ClientConfig]:
        for name in clients:
            if not CLIENT_NAME.match(name):
                raise ValueError(f"client name {name!r} must match {CLIENT_NAME.pattern}")
        return clients

    @model_validator(mode="after")
    def _default_client(self) -> AuthSettings:
        if self.jwt is not None and self.jwt.default_client not in (None, *self.clients):
            raise ValueError(f"jwt.default_client {self.jwt.default_client!r} is not a configured client")
        return self


class AuditSettings(_Strict):
    """`gateway.audit`: one JSON line per tool call on the `mcp_gateway.audit` logger."""

    enabled: bool = True
    file: str | None = Field(default=None, description="append here instead of stderr")
    arguments: bool = Field(default=False, description="include the (redacted) arguments")


class GatewaySettings(_Strict):
    """The optional top-level `gateway` object; each field may be overridden by `MCP_GATEWAY_<FIELD>`, and
    a field of a section by `MCP_GATEWAY_<SECTION>__<FIELD>`."""

    call_timeout: float = Field(default=30.0, gt=0, description="seconds a tool call may take")
    startup_timeout: float = Field(default=30.0, gt=0, description="seconds a backend may take to start")
    max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0, description="largest request body accepted")
    restart_backoff_initial: float = Field(default=0.5, gt=0)
    restart_backoff_max: float = Field(default=30.0, gt=0)
    name_separator: str = Field(default="_", min_length=1, max_length=2)
    status_interval: float = Field(
        default=5.0, gt=0, description="seconds between polls of each backend's statusTool (its figures' freshness)"
    )
    drain_seconds: float = Field(
        default=1.0, ge=0, description="after SIGTERM/SIGINT: seconds /ready answers 503 while still serving"
    )
    shutdown_timeout: float = Field(
        default=30.0, gt=0, description="after the drain: seconds calls in flight may take to finish"
    )
    header_timeout: float = Field(
        default=10.0, gt=0, description="seconds a connection may take to send a request's complete headers"
    )
    # resilience (docs/resilience.md): defaults for every server, overrides under `servers.<name>`
    redis_url: str | None = Field(default=None, description="shared L2 cache and breaker state (else env REDIS_URL)")
    redis: RedisSettings = Field(default_factory=RedisSettings)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    bulkhead: BulkheadSettings = Field(default_factory=BulkheadSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    servers: dict[str, ServerSettings] = Field(default_factory=dict)
    # security (docs/security.md)
    auth: AuthSettings | None = None
    audit: AuditSettings = Field(default_factory=AuditSettings)
    # features (docs/features.md)
    discovery: DiscoverySettings = Field(default_factory=DiscoverySettings)
    profiles: dict[str, ProfileSettings] = Field(default_factory=dict)
    cache_hints: CacheHintSettings = Field(default_factory=CacheHintSettings)

    _profile_names = field_validator("profiles")(check_profile_names)

    @field_validator("name_separator")
    @classmethod
    def _separator_chars(cls, value: str) -> str:
        if not re.fullmatch(r"[a-zA-Z0-9_-]+", value):
            raise ValueError("may only contain letters, digits, '_' and '-'")
        return value


class GatewayConfig(_Strict):
    """The whole file."""

    mcp_servers: dict[str, ServerConfig] = Field(alias="mcpServers")
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)

    @field_validator("mcp_servers")
    @classmethod
    def _names(cls, servers: dict[str, ServerConfig]) -> dict[str, ServerConfig]:
        for name in servers:
            if not SERVER_NAME.match(name):
                raise ValueError(f"server name {name!r} must match {SERVER_NAME.pattern}")
        return servers

    @property
    def enabled_servers(self) -> dict[str, ServerConfig]:
        return {name: server for name, server in self.mcp_servers.items() if not server.disabled}


def expand_env(value: Any, environ: dict[str, str] | os._Environ[str], file: str | Path, path: str) -> Any:
    """Expand `${VAR}` and `${VAR:-default}` in every string of `value`."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ and environ[name] != "":
                return environ[name]
            if default is not None:
                return default
            raise ConfigError(file, path, f"environment variable {name} is not set (use ${{{name}:-default}})")

        return ENV_REFERENCE.sub(substitute, value)
    if isinstance(value, dict):
        return {key: expand_env(item, environ, file, f"{path}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [expand_env(item, environ, file, f"{path}[{index}]") for index, item in enumerate(value)]
    return value


_SECTIONS = frozenset({"auth", "audit", "profiles"})  # objects, not env-overridable scalars
NESTING = "__"  # MCP_GATEWAY_BREAKER__FAIL_MAX=3 sets gateway.breaker.fail_max


def _env_overrides(environ: dict[str, str] | os._Environ[str]) -> dict[tuple[str, ...], tuple[str, str]]:
    """`MCP_GATEWAY_<FIELD>` for a top-level scalar, `MCP_GATEWAY_<SECTION>__<FIELD>` (any depth, e.g.
    `MCP_GATEWAY_SERVERS__SLACK__TIMEOUT`) inside a section: path (lower-cased) -> (variable, value)."""
    fields = GatewaySettings.model_fields.keys()
    out: dict[tuple[str, ...], tuple[str, str]] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        path = tuple(key[len(ENV_PREFIX) :].lower().split(NESTING))
        if path[0] not in fields or (len(path) == 1 and path[0] in _SECTIONS) or "" in path:
            continue
        out[path] = (key, value)
    return out


def _apply_overrides(gateway: Any, overrides: dict[tuple[str, ...], tuple[str, str]]) -> dict[str, Any]:
    merged: dict[str, Any] = dict(gateway) if isinstance(gateway, dict) else {}
    for path, (_, value) in sorted(overrides.items()):
        node = merged
        for part in path[:-1]:
            child = node.get(part)
            node[part] = child = dict(child) if isinstance(child, dict) else {}
            node = child
        node[path[-1]] = value
    return merged


def _json_path(location: tuple[str | int, ...]) -> str:
    path = "$"
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _describe(error: ErrorDetails) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required key is missing"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def parse_config(raw: Any, file: str | Path, environ: dict[str, str] | os._Environ[str] | None = None) -> GatewayConfig:
    """Validate an already-decoded config document."""
    environ = os.environ if environ is None else environ
    if not isinstance(raw, dict):
        raise ConfigError(file, "$", "the file must hold a JSON object with an 'mcpServers' key")
    expanded = expand_env(raw, environ, file, "$")
    overrides = _env_overrides(environ)
    if overrides:
        expanded["gateway"] = _apply_overrides(expanded.get("gateway", {}), overrides)
    try:
        config = GatewayConfig.model_validate(expanded)
    except ValidationError as error:
        first = error.errors()[0]
        location = tuple(first["loc"])
        problem = _describe(first)
        if location and location[0] == "gateway":
            inside = tuple(str(part) for part in location[1:])
            sources = [var for path, (var, _) in overrides.items() if inside[: len(path)] == path]
            if sources:
                problem += f" (from env {sources[0]})"
        location = tuple("mcpServers" if part == "mcp_servers" else part for part in location)
        location = tuple(part for part in location if part not in ("function-after[_one_kind()]",))
        raise ConfigError(file, _json_path(location), problem) from None
    for name in config.gateway.servers:
        if name not in config.mcp_servers:
            raise ConfigError(file, f"$.gateway.servers.{name}", f"no server named {name!r} in mcpServers")
    auth = config.gateway.auth
    for index, name in enumerate(auth.memory.servers or [] if auth is not None else []):
        server = config.mcp_servers.get(name)
        if server is None:
            problem = f"no server named {name!r} in mcpServers"
        elif not server.client_scoped_arguments:
            problem = f"server {name!r} declares no clientScopedArguments (which argument holds a client's scope?)"
        else:
            continue
        raise ConfigError(file, f"$.gateway.auth.memory.servers[{index}]", problem)
    if config.gateway.redis_url is None and environ.get("REDIS_URL"):
        config.gateway.redis_url = environ["REDIS_URL"]  # the one place REDIS_URL is read
    return config


def load_config(file: str | Path, environ: dict[str, str] | os._Environ[str] | None = None) -> GatewayConfig:
    """Read, expand and validate a config file."""
    path = Path(file)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, "$", "file not found") from None
    except OSError as error:
        raise ConfigError(path, "$", f"cannot read: {error.strerror}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(path, "$", f"invalid JSON at line {error.lineno} column {error.colno}: {error.msg}") from None
    return parse_config(raw, path, environ)


def raw_servers(file: str | Path) -> Any:
    """The `mcpServers` of a config file as written (before `${VAR}` expansion: where secrets are referenced),
    or None when it cannot be read."""
    try:
        return json.loads(Path(file).read_text(encoding="utf-8")).get("mcpServers")
    except Exception:
        return None
