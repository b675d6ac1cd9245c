"""Benchmark and recall evaluation for the ai_memory server (`python -m bench.ai_memory`)."""
