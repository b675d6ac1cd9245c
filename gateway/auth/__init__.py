"""Who is calling: client API keys (`keys`), bearer-token and JWT authentication (`authenticate`), the Origin
and bearer middleware in front of the HTTP endpoints (`middleware`), and Streamable HTTP sessions bound to
the client that opened them (`sessions`).

May import: guard, routing, backends, ops, config."""
