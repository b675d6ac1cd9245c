"""The local sentence-embedding model (all-MiniLM-L6-v2, int8 on onnxruntime, or numpy float32), shared by
ai_memory (memory search) and the gateway (tool search, `gateway.routing.discovery`)."""
