"""Issue 14's targets judged on one `./dev bench` run: each figure beside its target, met or missed, as
measured and as scaled to the speed of the machine the targets were set on.

The issue set its absolute targets (µs of CPU per call, ms of added latency, s of CLI wall time) on a machine
whose bare ASGI echo cost 38 µs of CPU per call. CPU time per call holds within a run whatever the load, but
not from one machine to another: on the machines of this project's sessions the same echo cost 29, 40 and
67-85 µs, and every figure of the gateway moved with it (docs/benchmarks.md, "Last figures"). So each absolute
target is printed twice: as written, and scaled by this run's echo against that 38 µs (a target of 100 µs is
2.6 times the echo's CPU per call). The ratio targets (calls/s against the echo, L2 against L1) and the memory
target need no scaling. Without the hotpath section there is no echo, and only the absolute verdicts print.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.footprint import CLI_TARGET_S, LABELS, RSS_TARGET_MIB

ECHO_WHERE_SET_US = 38.0  # the bare echo's CPU per call in the issue's own table


@dataclass(frozen=True)
class Verdict:
    target: str
    measured: str
    met: bool
    scaled_met: bool | None = None  # None: a ratio or a size, which need no scaling
    scaled_limit: str = ""


def _hotpath(report: dict[str, Any], key: str, figure: str) -> float | None:
    """The hot path's `figure` of target `key` (None when that target was not measured or was skipped)."""
    value = report.get("hotpath", {}).get("targets", {}).get(key, {}).get(figure)
    return float(value) if value is not None else None


def _cpu(report: dict[str, Any], key: str) -> float | None:
    return _hotpath(report, key, "cpu_us_per_call")


def _rate(report: dict[str, Any], key: str) -> float | None:
    return _hotpath(report, key, "calls_per_s")


def scale(report: dict[str, Any]) -> float | None:
    """This run's machine against the one the targets were set on: its echo's CPU per call ÷ 38 µs."""
    echo = _cpu(report, "echo")
    return echo / ECHO_WHERE_SET_US if echo else None


def _absolute(target: str, value: float, limit: float, unit: str, factor: float | None, digits: int) -> Verdict:
    measured = f"{value:.{digits}f} {unit}"
    if factor is None:
        return Verdict(target, measured, value <= limit)
    scaled = limit * factor
    return Verdict(target, measured, value <= limit, value <= scaled, f"{scaled:.{digits}f} {unit}")


def verdicts(report: dict[str, Any]) -> list[Verdict]:
    """Every target the sections in `report` measured, in the issue's order."""
    factor = scale(report)
    found: list[Verdict] = []
    echo_rate, l1_rate, l1, l2, uncached = (
        _rate(report, "echo"),
        _rate(report, "l1"),
        _cpu(report, "l1"),
        _cpu(report, "l2"),
        _cpu(report, "uncached"),
    )
    if echo_rate and l1_rate:
        found.append(
            Verdict("L1 hit calls/s >= 0.33x the echo's", f"{l1_rate / echo_rate:.2f}x", l1_rate >= 0.33 * echo_rate)
        )
    if l1 is not None:
        found.append(_absolute("L1 hit CPU per call <= 100 µs", l1, 100, "µs", factor, 0))
    if l1 and l2 is not None:
        found.append(Verdict("L2 hit CPU per call <= 1.5x the L1 hit's", f"{l2 / l1:.2f}x", l2 <= 1.5 * l1))
    if uncached is not None:
        found.append(_absolute("uncached call CPU per call <= 250 µs", uncached, 250, "µs", factor, 0))
    raw = _cpu(report, "uncached_raw")
    if raw is not None:  # the same target where the backend keeps up (bench.raw_backend): the gateway's own cost
        found.append(_absolute("the same, behind a backend that keeps up", raw, 250, "µs", factor, 0))
    for era, row in report.get("latency", {}).items():
        found.append(_absolute(f"added p50 over stdio, {era}, <= 0.25 ms", row["added_p50_ms"], 0.25, "ms", factor, 3))
    for era, row in report.get("latency_raw", {}).items():  # the floor: a round trip to a framework-free backend
        direct = row["direct_p50_ms"]
        found.append(
            _absolute(
                f"the same, {era}, behind a framework-free backend (its direct p50: {direct:.3f} ms)",
                row["added_p50_ms"],
                0.25,
                "ms",
                factor,
                3,
            )
        )
    footprint = report.get("footprint")
    if footprint:
        worst = max(footprint[key]["total"] for key in LABELS)
        found.append(
            Verdict(
                f"process tree RSS <= {RSS_TARGET_MIB} MiB (the largest of the three)",
                f"{worst:.0f} MiB",
                worst <= RSS_TARGET_MIB,
            )
        )
        for name, seconds in footprint["cli_s"].items():
            found.append(_absolute(f"`{name}` <= {CLI_TARGET_S:g} s", seconds, CLI_TARGET_S, "s", factor, 2))
    return found


def print_report(report: dict[str, Any]) -> None:
    found = verdicts(report)
    if not found:
        return
    factor = scale(report)
    print(
        "Issue 14's targets in this run"
        + (
            f" (scaled: this machine's echo costs {factor * ECHO_WHERE_SET_US:.0f} µs per call, "
            f"{factor:.2f}x the {ECHO_WHERE_SET_US:.0f} µs of the machine the targets were set on)"
            if factor
            else ""
        )
    )
    print("| target | this run | as written | scaled to this machine |")
    print("|---|---|---|---|")
    for verdict in found:
        scaled = (
            "(not scaled)"
            if verdict.scaled_met is None
            else f"{'meets' if verdict.scaled_met else 'misses'} <= {verdict.scaled_limit}"
        )
        print(f"| {verdict.target} | {verdict.measured} | {'meets' if verdict.met else 'misses'} | {scaled} |")
