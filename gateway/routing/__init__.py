"""Where a call goes: the merged catalog of exposed tools and their routes (`catalog`) and the hub that owns
the backends and runs every tool call through the resilience layer to a backend (`hub`).

May import: resilience, backends, ops, config."""
