"""The client-facing wire: Streamable HTTP (`http`, `streamable`), the legacy HTTP+SSE transport (served by
FastMCP inside `http`), stdio (`stdio`), the fast path for the hot methods (`fastpath`), the FastMCP front
for everything else (`front` for tools, `components` for backends' resources and prompts), and the `peers`
that carry a backend's requests back to the calling client.

May import: auth, guard, routing, backends, ops, config (never the other way)."""
