"""Streamable HTTP sessions belong to the client that opened them.

An `Mcp-Session-Id` is bound to the authenticated client whose request created it. A request from
another client that names it is passed on under a fresh random id instead, so it gets exactly the
answer of an unknown session (404) and learns nothing: it cannot send on the session, listen to its
stream (the owner's relayed sampling requests and notifications) or end it. Used only when
authentication is on. (Legacy SSE sessions need nothing here: the SDK's SSE transport already
refuses a `session_id` presented by another user than the one that opened it.)

Owners are learned from the `mcp-session-id` header of the response that creates a session. At
most `max_sessions` are remembered (least recently used dropped); a dropped session is refused like
a stolen one, and its client opens a new one, as the protocol asks after a 404.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict

from starlette.types import Message, Scope, Send

__all__ = ["SessionOwners"]

_HEADER = b"mcp-session-id"


class SessionOwners:
    """Session id -> name of the client that opened it; `client` below is that name."""

    def __init__(self, max_sessions: int = 100_000) -> None:
        self.max_sessions = max_sessions
        self._owners: OrderedDict[str, str] = OrderedDict()

    def _owned(self, session: str, client: str) -> bool:
        owner = self._owners.get(session)
        if owner is None:
            return False
        self._owners.move_to_end(session)
        return owner == client

    def guard(self, scope: Scope, client: str) -> Scope:
        """The request `scope`, with a session id that is not `client`'s replaced by a fresh one."""
        headers = scope["headers"]
        session = next((v.decode("latin-1") for k, v in headers if k == _HEADER), None)
        if session is None or self._owned(session, client):
            return scope
        fresh = [(k, uuid.uuid4().hex.encode() if k == _HEADER else v) for k, v in headers]
        return {**scope, "headers": fresh}

    def learning(self, scope: Scope, client: str, send: Send) -> Send:
        """`send`, watching the response for a session it creates for `client` (only a request
        without a session id can create one)."""
        if any(k == _HEADER for k, _ in scope["headers"]):
            return send

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                for name, value in message.get("headers", []):
                    if name.lower() == _HEADER:
                        self._learn(value.decode("latin-1"), client)
            await send(message)

        return watch

    def _learn(self, session: str, client: str) -> None:
        if session not in self._owners:
            self._owners[session] = client
            while len(self._owners) > self.max_sessions:
                self._owners.popitem(last=False)
