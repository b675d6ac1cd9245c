"""mcp-gateway: one MCP endpoint in front of every configured backend server.

The folders follow a tool call from the client to the backend; each may import only the ones below it
(checked by import-linter, see `[tool.importlinter]` in pyproject.toml):

    cli, serve        start-up: load the config, wire everything, serve
    transports/       the wire: Streamable HTTP, SSE, stdio, the fast path, the FastMCP front
    auth/             who is calling: API keys, JWTs, Origin checks, session ownership
    guard/            what they may do: allow lists, rate limits, redaction, audit
    routing/          where the call goes: the hub, the catalog, the call
    resilience/       how it survives: cache, breakers, bulkheads, retries
    backends/         the backend sessions: stdio pipes, remote sessions, calls in flight
    ops/              metrics, tracing, logs, shutdown (used from every layer)
    config/           the settings schema every layer is handed
"""

__version__ = "0.1.0"
