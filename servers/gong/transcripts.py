"""`POST /v2/calls/transcript` entries as speaker turns, and turns cut to a size."""

from __future__ import annotations

from typing import Any

from servers.gong.models import Monologue


def monologues(raw: dict[str, Any]) -> list[Monologue]:
    """One `callTranscripts[]` entry as speaker turns."""
    monologues = []
    for part in raw.get("transcript") or []:
        sentences = part.get("sentences") or []
        monologues.append(
            Monologue(
                speaker_id=part.get("speakerId"),
                topic=part.get("topic"),
                start_ms=sentences[0].get("start") if sentences else None,
                end_ms=sentences[-1].get("end") if sentences else None,
                text=" ".join(s.get("text", "") for s in sentences).strip(),
            )
        )
    return monologues


def pieces(turn: Monologue, max_chars: int) -> list[Monologue]:
    """A turn longer than `max_chars` as consecutive pieces that each fit (cut at spaces where possible)."""
    if len(turn.text) <= max_chars:
        return [turn]
    pieces, text = [], turn.text
    while text:
        cut = len(text) if len(text) <= max_chars else (text.rfind(" ", 0, max_chars) + 1 or max_chars)
        pieces.append(turn.model_copy(update={"text": text[:cut].strip()}))
        text = text[cut:]
    return pieces
