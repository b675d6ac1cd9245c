"""What a source yields: one `Item` per message, speaker turn, note or record, and its memory form."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

MAX_TEXT = 4_000
"""Characters of source text per memory; longer texts are split into numbered parts."""


@dataclass(frozen=True)
class Item:
    """One thing worth remembering, with where it came from."""

    source: str
    source_id: str
    content: str
    url: str | None
    author: str | None
    ts: str | None
    account: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The memory's upsert key: re-ingesting the item updates this memory, whatever its text."""
        return f"{self.source}:{self.source_id}"

    @property
    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "source": self.source,
            "source_id": self.source_id,
            "url": self.url,
            "author": self.author,
            "ts": self.ts,
            **self.extra,
        }
        if self.account:
            meta["account"] = self.account
        return {k: v for k, v in meta.items() if v is not None}


def iso_from_epoch(seconds: float) -> str:
    """An ISO-8601 UTC timestamp for Unix seconds (Slack's `ts`)."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def plain_text(markup: str) -> str:
    """HTML (HubSpot note bodies) as plain text."""
    text = re.sub(r"<(br|/p|/div|/li)\b[^>]*>", "\n", markup, flags=re.IGNORECASE)
    text = html.unescape(re.sub(r"<[^>]+>", " ", text))
    return re.sub(r"[ \t]+", " ", re.sub(r"\s*\n\s*", "\n", text)).strip()


def parts(text: str, limit: int = MAX_TEXT) -> list[str]:
    """`text` in pieces of at most `limit` characters, cut at whitespace where possible."""
    out, rest = [], text.strip()
    while len(rest) > limit:
        cut = rest.rfind(" ", 0, limit)
        cut = cut if cut > limit // 2 else limit
        out.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    if rest:
        out.append(rest)
    return out
