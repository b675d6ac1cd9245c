"""Checking tool arguments: every bad input becomes one clear `ToolError`, before any tier is touched."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any

from fastmcp.exceptions import ToolError

from servers.ai_memory.config import MemoryConfig
from servers.ai_memory.filters import Filter, FilterError, parse_filter

NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-/]{0,127}$")
MEMORY_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-/@#]{0,199}$")
MAX_TTL = 10 * 365 * 24 * 3600
MAX_METADATA_BYTES = 16_384
CONSISTENCY = ("eventual", "indexed")
ITEM_FIELDS = {"content", "metadata", "ttl_seconds", "key"}


def bad(msg: str) -> ToolError:
    return ToolError(msg)


@dataclass
class Item:
    """One memory to store, checked."""

    content: str
    metadata: dict[str, Any]
    ttl: float | None
    key: str | None = None  # caller-chosen identity within the namespace (upsert)


class Validator:
    def __init__(self, config: MemoryConfig) -> None:
        self.config = config

    @staticmethod
    def namespace(namespace: Any) -> str:
        if not isinstance(namespace, str) or not NAMESPACE.match(namespace):
            raise bad(
                "namespace must be 1-128 characters of letters, digits and _ . : - / "
                f"starting with a letter or digit; got {namespace!r}"
            )
        return namespace

    @staticmethod
    def memory_id(memory_id: Any, where: str = "id") -> str:
        if not isinstance(memory_id, str) or not memory_id:
            raise bad(f"{where} must be a non-empty string")
        return memory_id

    @staticmethod
    def key(key: Any, where: str = "key") -> str:
        """A caller-chosen key for an upsert."""
        if not isinstance(key, str) or not MEMORY_KEY.match(key):
            raise bad(f"{where} must be 1-200 characters of letters, digits and _ . : - / @ #, got {key!r}")
        return key

    def content(self, content: Any, where: str = "content") -> str:
        if not isinstance(content, str) or not content.strip():
            raise bad(f"{where} must be a non-empty string")
        size = len(content.encode("utf-8"))
        if size > self.config.max_content_bytes:
            raise bad(
                f"{where} is {size} bytes, over the limit of {self.config.max_content_bytes} bytes "
                "(AI_MEMORY_MAX_CONTENT_BYTES)"
            )
        return content

    @staticmethod
    def metadata(metadata: Any, where: str = "metadata") -> dict[str, Any]:
        if metadata is None:
            return {}
        if not isinstance(metadata, dict):
            raise bad(f"{where} must be a JSON object")
        try:
            raw = json.dumps(metadata, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise bad(f"{where} is not JSON-serialisable: {exc}") from exc
        if len(raw) > MAX_METADATA_BYTES:
            raise bad(f"{where} is {len(raw)} bytes of JSON, over the limit of {MAX_METADATA_BYTES}")
        return json.loads(raw)

    @staticmethod
    def ttl(ttl: Any, where: str = "ttl_seconds") -> float | None:
        if ttl is None:
            return None
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= MAX_TTL:
            raise bad(f"{where} must be a positive number of seconds up to {MAX_TTL}")
        return ttl

    @staticmethod
    def filters(filters: Any) -> Filter | None:
        try:
            return parse_filter(filters)
        except FilterError as exc:
            raise bad(f"invalid filters: {exc}") from exc

    def items(self, memories: Any, *, single: bool = False) -> list[Item]:
        if not isinstance(memories, list) or not memories:
            raise bad("memories must be a non-empty list")
        if len(memories) > self.config.max_batch:
            raise bad(f"at most {self.config.max_batch} memories per call (AI_MEMORY_MAX_BATCH)")
        out = []
        for i, m in enumerate(memories):
            where = "" if single else f"memories[{i}]."
            if not isinstance(m, dict):
                raise bad(f"memories[{i}] must be an object with a content field")
            unknown = set(m) - ITEM_FIELDS
            if unknown:
                raise bad(f"{where or 'memory '}has unknown fields: {sorted(unknown)}")
            key = m.get("key")
            out.append(
                Item(
                    self.content(m.get("content"), f"{where}content"),
                    self.metadata(m.get("metadata"), f"{where}metadata"),
                    self.ttl(m.get("ttl_seconds"), f"{where}ttl_seconds"),
                    None if key is None else self.key(key, f"{where}key"),
                )
            )
        return out

    def recall(self, query: Any, k: Any, min_score: Any, consistency: Any) -> None:
        if not isinstance(query, str) or not query.strip():
            raise bad("query must be a non-empty string")
        self.content(query, "query")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.config.max_k:
            raise bad(f"k must be an integer from 1 to {self.config.max_k}")
        if min_score is not None and (
            isinstance(min_score, bool) or not isinstance(min_score, int | float) or not -1 <= min_score <= 1
        ):
            raise bad("min_score must be a number between -1 and 1")
        if consistency not in CONSISTENCY:
            raise bad(f"consistency must be one of {list(CONSISTENCY)}, got {consistency!r}")

    @staticmethod
    def limit(limit: Any) -> int:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise bad("limit must be an integer from 1 to 1000")
        return limit

    @staticmethod
    def cursor(cursor: str | None) -> tuple[float, str] | None:
        if not cursor:
            return None
        try:
            raw = json.loads(base64.urlsafe_b64decode(cursor.encode()).decode())
            return float(raw[0]), str(raw[1])
        except Exception as exc:
            raise bad("invalid cursor (pass back next_cursor from a previous call)") from exc

    @staticmethod
    def make_cursor(created_at: float, memory_id: str) -> str:
        return base64.urlsafe_b64encode(json.dumps([created_at, memory_id]).encode()).decode()
