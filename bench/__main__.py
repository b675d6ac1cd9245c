"""`python -m bench [--quick] [--json] [--only SECTION ...]` (`./dev bench`): the gateway benchmarks, each figure
next to its baseline from the same run and with CPU time per call (see docs/benchmarks.md)."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench import footprint, gateway, hotpath, targets

SECTIONS = ("hotpath", "latency", "footprint")


async def run(quick: bool, sections: list[str]) -> dict[str, Any]:
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        if "hotpath" in sections:
            redis = None
            if shutil.which("redis-server"):
                from tests.helpers.redis_proc import RedisProcess

                redis = RedisProcess(directory)
                redis.start()
            try:
                report["hotpath"] = await hotpath.run(
                    directory, redis.url if redis else None, seconds=3 if quick else 6, rounds=1 if quick else 3
                )
            finally:
                if redis is not None:
                    redis.kill()
        if "latency" in sections:
            report["latency"] = await gateway.latency(1000 if quick else 3000, directory / "latency")
            # The same behind a backend with no framework: one stdio round trip between two Python processes
            # on this machine, the floor under the added latency (bench/raw_backend.py).
            report["latency_raw"] = await gateway.latency(
                1000 if quick else 3000, directory / "latency_raw", "bench.raw_backend"
            )
        if "footprint" in sections:
            report["footprint"] = await footprint.run(directory)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs (noisier)")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    args = parser.parse_args()
    report = asyncio.run(run(args.quick, args.only))
    if "hotpath" in report:
        hotpath.print_report(report["hotpath"])
    if "latency" in report:
        gateway.print_latency(report["latency"])
        gateway.print_latency(report["latency_raw"], "the framework-free `bench.raw_backend`")
    if "footprint" in report:
        footprint.print_report(report["footprint"])
    targets.print_report(report)
    if args.json:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
