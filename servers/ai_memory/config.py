"""Configuration from the environment. Every setting has an embedded default, so the server
starts on a fresh machine with no environment at all."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


def default_data_dir(env: dict[str, str]) -> Path:
    if env.get("MCP_GATEWAY_DATA_DIR"):
        return Path(env["MCP_GATEWAY_DATA_DIR"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("mcp-gateway", appauthor=False))


@dataclass
class SnowflakeSettings:
    account: str
    user: str
    password: str | None = None
    private_key_file: str | None = None
    private_key_passphrase: str | None = None
    warehouse: str | None = None
    database: str | None = None
    schema: str | None = None
    role: str | None = None
    host: str | None = None  # override for tests / private link (e.g. a fakesnow server)
    port: int | None = None
    protocol: str | None = None
    pool_size: int = 4
    login_timeout: int = 10
    network_timeout: int = 30
    extra: dict = field(default_factory=dict)

    def connect_kwargs(self) -> dict:
        kw: dict = {"account": self.account, "user": self.user}
        for name in ("password", "warehouse", "database", "schema", "role", "host", "port", "protocol"):
            value = getattr(self, name)
            if value not in (None, ""):
                kw[name] = value
        if self.private_key_file:
            kw["private_key_file"] = self.private_key_file
            if self.private_key_passphrase:
                kw["private_key_file_pwd"] = self.private_key_passphrase
        kw["login_timeout"] = self.login_timeout
        kw["network_timeout"] = self.network_timeout
        kw["session_parameters"] = {"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False}
        kw.update(self.extra)
        return kw


@dataclass
class MemoryConfig:
    data_dir: Path
    redis_url: str | None = None
    redis_prefix: str | None = None  # None: derived from the L3 store's identity (cache.redis_prefix)
    snowflake: SnowflakeSettings | None = None
    embedder: str = "auto"  # auto | onnx | onnx-fp32 | numpy (minilm) | torch | hash | cortex
    max_content_bytes: int = 32_768
    max_batch: int = 5_000
    max_k: int = 100
    l1_record_ttl: int = 3_600
    l1_query_ttl: int = 300
    l1_max_items: int = 10_000
    redis_timeout: float = 0.25
    purge_interval: float = 60.0
    outbox_drain_interval: float = 2.0
    warm_embedder: bool = False  # load the model at start; by default it loads when first needed
    fusion: str = "blend"  # blend | rrf
    ann_min_vectors: int = 20_000
    sync_interval: float = 0.5  # how stale a replica may be on a polling store without Redis
    indexed_timeout: float = 30.0  # recall consistency="indexed" waits at most this long
    outbox_batch: int = 500
    outbox_max_backoff: float = 60.0
    embed_batch: int = 256
    orphan_interval: float = 30.0
    sqlite_busy_timeout: float = 10.0
    tombstone_retention: float = 7 * 86400.0
    cortex_model: str = "snowflake-arctic-embed-l-v2.0"
    cortex_function: str = "AI_EMBED"  # AI_EMBED | EMBED_TEXT_768 (legacy)
    cortex_dim: int = 0  # 0: the model's known output size

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> MemoryConfig:
        env = dict(os.environ if env is None else env)
        sf = None
        if env.get("SNOWFLAKE_ACCOUNT"):
            port = env.get("SNOWFLAKE_PORT")
            sf = SnowflakeSettings(
                account=env["SNOWFLAKE_ACCOUNT"],
                user=env.get("SNOWFLAKE_USER", ""),
                password=env.get("SNOWFLAKE_PASSWORD"),
                private_key_file=env.get("SNOWFLAKE_PRIVATE_KEY_FILE"),
                private_key_passphrase=env.get("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"),
                warehouse=env.get("SNOWFLAKE_WAREHOUSE"),
                database=env.get("SNOWFLAKE_DATABASE"),
                schema=env.get("SNOWFLAKE_SCHEMA"),
                role=env.get("SNOWFLAKE_ROLE"),
                host=env.get("SNOWFLAKE_HOST"),
                port=int(port) if port else None,
                protocol=env.get("SNOWFLAKE_PROTOCOL"),
                pool_size=_int(env, "SNOWFLAKE_POOL_SIZE", 4),
                login_timeout=_int(env, "SNOWFLAKE_LOGIN_TIMEOUT", 10),
                network_timeout=_int(env, "SNOWFLAKE_NETWORK_TIMEOUT", 30),
            )
        return cls(
            data_dir=default_data_dir(env),
            redis_url=env.get("REDIS_URL") or None,
            redis_prefix=env.get("AI_MEMORY_REDIS_PREFIX", "").strip() or None,
            snowflake=sf,
            embedder=env.get("AI_MEMORY_EMBEDDER", "auto").strip().lower() or "auto",
            max_content_bytes=_int(env, "AI_MEMORY_MAX_CONTENT_BYTES", 32_768),
            max_batch=_int(env, "AI_MEMORY_MAX_BATCH", 5_000),
            l1_record_ttl=_int(env, "AI_MEMORY_L1_RECORD_TTL", 3_600),
            l1_query_ttl=_int(env, "AI_MEMORY_L1_QUERY_TTL", 300),
            l1_max_items=_int(env, "AI_MEMORY_L1_MAX_ITEMS", 10_000),
            redis_timeout=_float(env, "AI_MEMORY_REDIS_TIMEOUT", 0.25),
            purge_interval=_float(env, "AI_MEMORY_PURGE_INTERVAL", 60.0),
            outbox_drain_interval=_float(env, "AI_MEMORY_OUTBOX_DRAIN_INTERVAL", 2.0),
            warm_embedder=env.get("AI_MEMORY_WARM_EMBEDDER", "0").strip().lower() in ("1", "true", "yes"),
            fusion=env.get("AI_MEMORY_FUSION", "blend"),
            ann_min_vectors=_int(env, "AI_MEMORY_ANN_MIN_VECTORS", 20_000),
            sync_interval=_float(env, "AI_MEMORY_SYNC_INTERVAL", 0.5),
            indexed_timeout=_float(env, "AI_MEMORY_INDEXED_TIMEOUT", 30.0),
            outbox_batch=_int(env, "AI_MEMORY_OUTBOX_BATCH", 500),
            outbox_max_backoff=_float(env, "AI_MEMORY_OUTBOX_MAX_BACKOFF", 60.0),
            embed_batch=_int(env, "AI_MEMORY_EMBED_BATCH", 256),
            orphan_interval=_float(env, "AI_MEMORY_ORPHAN_INTERVAL", 30.0),
            sqlite_busy_timeout=_float(env, "AI_MEMORY_SQLITE_BUSY_TIMEOUT", 10.0),
            tombstone_retention=_float(env, "AI_MEMORY_TOMBSTONE_RETENTION", 7 * 86400.0),
            cortex_model=env.get("AI_MEMORY_CORTEX_MODEL") or "snowflake-arctic-embed-l-v2.0",
            cortex_function=(env.get("AI_MEMORY_CORTEX_FUNCTION") or "AI_EMBED").strip().upper(),
            cortex_dim=_int(env, "AI_MEMORY_CORTEX_DIM", 0),
        )
