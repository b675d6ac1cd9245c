"""What a caller may do, on every tool call of every front path: per-client allow/deny lists (`clients`), rate
limits (`ratelimit`), secret redaction (`redaction`), the audit log (`audit`), and the `Guard` that applies
them around the hub (`guard`).

May import: routing, resilience, backends, ops, config."""
