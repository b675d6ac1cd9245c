"""The settings schema: `config/mcp.json` loaded and validated (`loader`), with the resilience sections
(`resilience`). Every layer is handed these objects; nothing here imports the rest of the gateway."""
