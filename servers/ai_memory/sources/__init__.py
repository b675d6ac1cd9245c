"""One memory across Slack, Gong and HubSpot: `ingest_source` and `list_sources`.

Each source module (`slack`, `gong`, `hubspot`) reads one vendor through the vendor client of
`servers/<vendor>/` (same env credentials and base URLs, same rate limiting) and yields `Item`s;
`ingest` writes them into a namespace through the memory service's public tool functions, keyed by
metadata `source` + `source_id` so re-ingesting updates instead of duplicating; `state` keeps the
cursor, item count and last run per namespace, source and scope; `tools` registers the two tools.
"""
