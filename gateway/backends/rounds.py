"""Input rounds (SEP-2322, multi round-trip requests) of calls through the gateway.

A 2026-07-28 backend that needs the client's input answers a request with `resultType: "input_required"`:
`inputRequests` (keyed `elicitation/create`, `sampling/createMessage` or `roots/list` requests) and/or an
opaque `requestState`, and expects the same request again carrying `inputResponses` (the client's results,
under the same keys) and the `requestState` echoed back. This module owns the shapes of both directions and the
translation for callers that cannot take part:

* A 2026-07-28 client answers the rounds itself. Its request's part in them is an `InputRound` (`parse`); the
  backend's `input_required` goes back to it as the backend sent it (`invalid` checks the shape, `cleaned` drops
  the backend hop's reserved `_meta`), and its retry is a call like any other, routed by name to the same backend
  tool, with the `InputRound`'s fields added to the backend request (`InputRound.wire`).
* A handshake-era client cannot be sent `input_required`: `drive` asks it each input request as a server-to-client
  request on its own session (its `Peer`) and sends the request again with its answers, round after round.

`requestState` belongs to the backend, which must treat it as attacker-controlled (it is integrity-protected by
the backend, e.g. sealed by the MCP SDK's `RequestStateBoundary`): the gateway never decodes, stores or trusts
it, and checks only that it is a string of at most `MAX_STATE_BYTES` (UTF-8), coming from the backend and from
the client alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import mcp_types
from mcp.shared.exceptions import MCPError

from gateway.backends.inflight import Peer
from gateway.backends.messages import FRAMEWORK_META, RESERVED_META, invalid_unicode, strip_reserved

INPUT_REQUIRED = "input_required"  # the result type, and the outcome of a call answered with it
MAX_STATE_BYTES = 64 * 1024  # the longest `requestState` relayed, either way
MAX_ROUNDS = 8  # input rounds of one call the gateway answers for a handshake-era client before it gives up
CAPABILITIES_META = "io.modelcontextprotocol/clientCapabilities"

# The client capability each input request needs (the same as the server-to-client request's).
CAPABILITY = {"sampling/createMessage": "sampling", "elicitation/create": "elicitation", "roots/list": "roots"}

Send = Callable[["InputRound"], Awaitable[tuple[dict[str, Any], str]]]


class InvalidRound(ValueError):
    """A client's `inputResponses` or `requestState` cannot be relayed; the message says why."""


def has_capability(capabilities: Any, method: str) -> bool:
    """`capabilities` (a `ClientCapabilities` dict) covers the client request `method`."""
    name = CAPABILITY.get(method)
    return isinstance(capabilities, dict) and name is not None and capabilities.get(name) is not None


def _state_problem(state: Any) -> str | None:
    if not isinstance(state, str):
        return "requestState must be a string"
    size = len(state) if state.isascii() else len(state.encode("utf-8", "surrogatepass"))
    if size > MAX_STATE_BYTES:
        return f"requestState is {size} bytes, over the gateway's limit of {MAX_STATE_BYTES}"
    return None


@dataclass(frozen=True, slots=True)
class InputRound:
    """A 2026-07-28 caller's part in input rounds: it answers `input_required` itself. On a retry, `responses`
    (`inputResponses`) and `state` (`requestState`, never read) go to the backend with the request; on a first
    call both are None. `capabilities` are the ones the caller declared, when it did."""

    responses: dict[str, Any] | None = None
    state: str | None = None
    capabilities: dict[str, Any] | None = None

    @property
    def retry(self) -> bool:
        """The request answers an earlier `input_required` (it must neither be answered from the cache nor
        stored in it: the result depends on the caller's answers)."""
        return self.responses is not None or self.state is not None

    def wire(self) -> dict[str, Any]:
        """The request fields this round adds to the backend request."""
        fields: dict[str, Any] = {}
        if self.responses is not None:
            fields["inputResponses"] = self.responses
        if self.state is not None:
            fields["requestState"] = self.state
        return fields

    @classmethod
    def parse(cls, params: dict[str, Any]) -> InputRound:
        """The round a 2026-07-28 request's `params` carry; `InvalidRound` when its fields cannot be relayed."""
        responses = params.get("inputResponses")
        if responses is not None:
            if not isinstance(responses, dict) or not all(isinstance(v, dict) for v in responses.values()):
                raise InvalidRound("Invalid params: inputResponses must be an object of result objects")
            if invalid_unicode(responses):
                raise InvalidRound("Invalid params: inputResponses hold a string that is not valid Unicode")
        state = params.get("requestState")
        if state is not None:
            problem = _state_problem(state) or ("requestState is not valid Unicode" if invalid_unicode(state) else None)
            if problem is not None:
                raise InvalidRound(f"Invalid params: {problem}")
        meta = params.get("_meta")
        capabilities = meta.get(CAPABILITIES_META) if isinstance(meta, dict) else None
        return cls(responses, state, capabilities if isinstance(capabilities, dict) else None)

    def undeclared(self, result: dict[str, Any]) -> str | None:
        """The first input request of `result` that needs a capability this caller did not declare."""
        if self.capabilities is None:
            return None
        for request in (result.get("inputRequests") or {}).values():
            if not has_capability(self.capabilities, request["method"]):
                return str(request["method"])
        return None


def input_required(result: dict[str, Any]) -> bool:
    """Whether a backend's result asks for input rather than completing the request."""
    return result.get("resultType") == INPUT_REQUIRED


def invalid(result: dict[str, Any]) -> str | None:
    """What is wrong with a backend's `input_required` result, or None if it can be relayed."""
    requests = result.get("inputRequests")
    state = result.get("requestState")
    if requests is None and state is None:
        return "it has neither inputRequests nor requestState"
    if requests is not None:
        if not isinstance(requests, dict):
            return "inputRequests is not an object"
        for key, request in requests.items():
            method = request.get("method") if isinstance(request, dict) else None
            if not isinstance(method, str) or method not in CAPABILITY:
                return f"input request {key!r} is not one of {', '.join(CAPABILITY)}"
            if request.get("params") is not None and not isinstance(request["params"], dict):
                return f"input request {key!r} has params that are not an object"
    if state is not None:
        return _state_problem(state)
    return None


def cleaned(result: dict[str, Any]) -> dict[str, Any]:
    """The `input_required` result as the caller gets it: the backend's, less the backend hop's own `_meta`
    (each hop stamps its own); `inputRequests` and `requestState` untouched."""
    if "_meta" not in result:
        return result
    meta = result["_meta"]
    kept: dict[str, Any] = {}
    if isinstance(meta, dict):  # (a `_meta` that is not an object is dropped)
        kept = {k: v for k, v in meta.items() if not k.startswith(RESERVED_META) and k != FRAMEWORK_META}
    result = {key: value for key, value in result.items() if key != "_meta"}
    if kept:
        result["_meta"] = kept
    return result


async def ask(peer: Peer | None, result: dict[str, Any], timeout: float, backend: str) -> InputRound:
    """Ask a handshake-era client each input request of `result` (a server-to-client request on its session):
    the next round. `MCPError` when it cannot be asked one (no client, or not declared) or answers with an error."""
    requests = result.get("inputRequests")
    if not requests:  # only a requestState: the backend wants the request again as it is
        return InputRound(None, result.get("requestState"))
    responses: dict[str, Any] = {}
    for key, request in requests.items():
        method = request["method"]
        if peer is None or not peer.capable(method):
            text = f"backend '{backend}' needs '{method}' from the client, which cannot be asked"
            raise MCPError(mcp_types.INVALID_REQUEST, text)
        try:
            responses[key] = await peer.request(method, strip_reserved(request.get("params")), timeout)
        except TimeoutError:
            text = f"the client did not answer '{method}' within {timeout:g} s"
            raise MCPError(mcp_types.REQUEST_TIMEOUT, text) from None
    return InputRound(responses, result.get("requestState"))


async def drive(
    result: dict[str, Any], send: Send, peer: Peer | None, timeout: float, backend: str
) -> tuple[dict[str, Any], str]:
    """Answer a backend's input rounds for a handshake-era client: ask it (`ask`), `send` the request again with
    its answers, until the backend completes the request: its (result, outcome). `MCPError` when the client
    cannot answer, or after `MAX_ROUNDS` rounds."""
    for round_ in range(MAX_ROUNDS):
        if not result.get("inputRequests"):  # the backend is busy (load shedding): back off a little
            await anyio.sleep(min(0.05 * 2**round_, 0.25))
        result, outcome = await send(await ask(peer, result, timeout, backend))
        if outcome != INPUT_REQUIRED:
            return result, outcome
    raise MCPError(mcp_types.INTERNAL_ERROR, f"backend '{backend}' kept asking for input")
