"""The backend side: one persistent, supervised session per backend server (`session`), the stdio child's
start (`spawn`, no MCP import), its pipes and hot path (`pipe`), the calls in flight whose clients get relayed
traffic (`inflight`), the message shapes the gateway builds (`messages`), and over stdio the client's protocol era
the sessions speak (`era`).

May import: ops, config."""
