"""bench.targets: each of issue 14's targets judged as written and scaled by the run's echo."""

from __future__ import annotations

from typing import Any

from bench.targets import verdicts


def _report(echo_us: float, l1_us: float, uncached_us: float, added_ms: float, cli_s: float) -> dict[str, Any]:
    rows = {
        "echo": {"calls_per_s": 20_000, "cpu_us_per_call": echo_us},
        "l1": {"calls_per_s": 8_000, "cpu_us_per_call": l1_us},
        "l2": {"calls_per_s": 6_000, "cpu_us_per_call": l1_us * 1.2},
        "uncached": {"calls_per_s": 900, "cpu_us_per_call": uncached_us},
    }
    footprint = {key: {"total": 300.0} for key in ("rss_idle_mib", "rss_model_loaded_mib", "rss_after_calls_mib")}
    footprint["cli_s"] = {"check": cli_s}
    return {
        "hotpath": {"targets": rows},
        "latency": {"2025-11-25": {"added_p50_ms": added_ms}},
        "footprint": footprint,
    }


def test_on_the_machine_the_targets_were_set_on_both_verdicts_agree() -> None:
    found = {v.target: v for v in verdicts(_report(38, 99, 251, 0.2, 1.9))}
    assert found["L1 hit CPU per call <= 100 µs"].met and found["L1 hit CPU per call <= 100 µs"].scaled_met
    assert not found["uncached call CPU per call <= 250 µs"].met
    assert found["uncached call CPU per call <= 250 µs"].scaled_met is False
    assert (
        found["L1 hit calls/s >= 0.33x the echo's"].met
        and found["L1 hit calls/s >= 0.33x the echo's"].scaled_met is None
    )
    assert found["L2 hit CPU per call <= 1.5x the L1 hit's"].met


def test_a_machine_twice_as_slow_doubles_every_absolute_limit() -> None:
    found = {v.target: v for v in verdicts(_report(76, 190, 480, 0.45, 3.9))}
    for name in (
        "L1 hit CPU per call <= 100 µs",
        "uncached call CPU per call <= 250 µs",
        "added p50 over stdio, 2025-11-25, <= 0.25 ms",
        "`check` <= 2 s",
    ):
        assert not found[name].met, name
        assert found[name].scaled_met, name
    assert found["L1 hit CPU per call <= 100 µs"].scaled_limit == "200 µs"


def test_without_the_hotpath_section_only_absolute_verdicts() -> None:
    report = _report(38, 99, 251, 0.3, 1.5)
    del report["hotpath"]
    found = verdicts(report)
    assert found[0].target == "added p50 over stdio, 2025-11-25, <= 0.25 ms"
    assert all(v.scaled_met is None for v in found)
    assert not found[0].met
