"""Config sections of the features peers' users rely on: tool search (`gateway.discovery`), profiles
(`gateway.profiles`) and per-server tool overrides (`mcpServers.<name>.tools`)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

PROFILE_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,48}$")
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
META_TOOLS = ("search_tools", "call_tool")  # the two tools `tools/list` shows in search mode


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class DiscoverySettings(_Strict):
    """`gateway.discovery`: `all` lists every tool; `search` lists just `search_tools` and `call_tool`."""

    mode: Literal["all", "search"] = "all"
    embedder: Literal["auto", "onnx", "numpy", "hash", "none"] = Field(
        default="auto", description="the semantic half of tool search; `none` ranks by keywords only"
    )
    keyword_weight: float = Field(
        default=0.5, ge=0, le=1, description="share of the keyword (BM25) score in the hybrid rank"
    )


class CacheHintSettings(_Strict):
    """`gateway.cache_hints`: the `ttlMs` of the gateway's own merged lists for 2026-07-28 clients (changes are
    announced with `list_changed` as well)."""

    list_ttl_ms: int = Field(default=60_000, ge=0, description="ttlMs of tools/list")


class ProfileSettings(_Strict):
    """`gateway.profiles.<name>`: the tools (glob patterns over exposed names) served at `/mcp/<name>`."""

    tools: list[str] = Field(min_length=1)


class ToolOverride(_Strict):
    """`mcpServers.<server>.tools.<tool>`: rename, re-describe or hide one backend tool."""

    name: str | None = None
    description: str | None = None
    disabled: bool = False

    @field_validator("name")
    @classmethod
    def _name_chars(cls, value: str | None) -> str | None:
        if value is not None and not TOOL_NAME.match(value):
            raise ValueError(f"'name' must match {TOOL_NAME.pattern}")
        return value


def check_profile_names(profiles: dict[str, ProfileSettings]) -> dict[str, ProfileSettings]:
    for name in profiles:
        if not PROFILE_NAME.match(name):
            raise ValueError(f"profile name {name!r} must match {PROFILE_NAME.pattern}")
    return profiles
