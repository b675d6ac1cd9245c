"""The backend side: one persistent, supervised session per backend server (`session`), the stdio child's
start (`spawn`, no MCP import), its pipes and hot path (`pipe`), the calls in flight whose clients get relayed
traffic (`inflight`), and the message shapes the gateway builds (`messages`).

May import: ops, config."""
