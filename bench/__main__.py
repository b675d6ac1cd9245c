"""`python -m bench [--quick] [--json]`: the gateway benchmarks (see docs/benchmarks.md)."""

from __future__ import annotations

import argparse
import asyncio
import json

from bench import gateway


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs (noisier)")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    args = parser.parse_args()
    report = asyncio.run(gateway.run(quick=args.quick))
    gateway.print_report(report)
    if args.json:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
