"""How a call survives a bad backend: the result cache (`cache`), circuit breakers (`breakers`), bulkheads
(`bulkhead`), retries (`retry`), per-tool policies (`policy`), the Redis link shared by replicas
(`redis_link`), the call path through them (`core`) and its Prometheus view (`collector`).

May import: backends, ops, config."""
