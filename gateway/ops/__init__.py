"""Operations, usable from every layer: Prometheus metrics (`metrics`), OpenTelemetry tracing (`tracing`),
logging, log redaction and backends' stderr (`logs`), graceful shutdown (`shutdown`), and the ASGI
helpers of every HTTP layer (`asgi`).

May import: config only."""
