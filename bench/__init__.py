"""Benchmarks. `python -m bench` (or `./dev bench`) runs the gateway figures; `python -m bench.ai_memory`
the memory server's. Every figure is printed next to a baseline measured in the same run."""
