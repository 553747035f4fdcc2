"""Repeated bench runs: per-repeat ratios against ``stock`` (paired by repeat), their median and a bootstrap 95%
interval (percentile method on the median, seeded, so a report is reproducible from its runs).

Beside the measured ratios, ``wall_speedup_speed_adjusted``: the wall speed-up with each run's wall time scaled by
the host speed probed around it (``host_speed``, :func:`seer_verl.bench.calibrate.probe_speed`), i.e. what the
ratio would have been had both runs met the same host speed. It is a model (wall time inversely proportional to
the probed decode speed), reported next to the measured ratio, never instead of it; only between runs on engines
without speculation (a probe on speculative engines measures their drafting, not the host).

``wall_speedup_host_adjusted``: the same with each run's wall time scaled by the share of the machine that load other
than the bench left it during the run (``host_cpu``: 1 - steal - other processes' CPU,
:func:`seer_verl.bench.cpu_usage.host_usage`), i.e. had no other load shared the host. Also a model (the engines are
CPU-bound, so a run given x% less of the machine takes x% longer), measured during the run itself rather than by
probes around it; comparable between any two runs."""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from typing import Any

from seer_verl.run_metrics import RATIOS, ratios


def bootstrap_median(xs: Sequence[float], level: float = 0.95, resamples: int = 10_000, seed: int = 0
                     ) -> tuple[float, float, float]:
    """(median, low, high): the median of ``xs`` and the percentile-bootstrap interval of the median."""
    if not xs:
        raise ValueError("bootstrap_median of no values")
    xs = list(xs)
    rng = random.Random(seed)
    meds = sorted(statistics.median(rng.choices(xs, k=len(xs))) for _ in range(resamples))
    lo = meds[int((1 - level) / 2 * (resamples - 1))]
    hi = meds[int((1 + level) / 2 * (resamples - 1))]
    return statistics.median(xs), lo, hi


#: engine profiles whose speed probes measure the host alone (no speculation on the probe's requests)
SPEED_COMPARABLE_PROFILES = frozenset({"plain", "priority"})

ADJUSTED = "wall_speedup_speed_adjusted"
HOST_ADJUSTED = "wall_speedup_host_adjusted"


def speed_adjusted_speedup(run: dict[str, Any], base: dict[str, Any]) -> float | None:
    """``base`` wall x its host speed over ``run`` wall x its host speed; None without comparable probes."""
    hr, hb = run.get("host_speed"), base.get("host_speed")
    if not hr or not hb or not {run.get("engine_profile"), base.get("engine_profile")} <= SPEED_COMPARABLE_PROFILES:
        return None
    return base["wall_s"] * hb["tok_s"] / (run["wall_s"] * hr["tok_s"])


def host_adjusted_speedup(run: dict[str, Any], base: dict[str, Any]) -> float | None:
    """``base`` wall x the share of the machine it had over the same for ``run``; None without ``host_cpu``."""
    hr, hb = run.get("host_cpu"), base.get("host_cpu")
    if not hr or not hb or hr["external"] >= 1 or hb["external"] >= 1:
        return None
    return base["wall_s"] * (1 - hb["external"]) / (run["wall_s"] * (1 - hr["external"]))


def paired_ratios(runs: list[dict[str, Any]], policy: str, base: str = "stock") -> dict[str, list[float]]:
    """Per-repeat ratios of ``policy`` against ``base`` (runs carry ``repeat``; a repeat without both is skipped)."""
    by = {(r["policy"], r.get("repeat", 0)): r for r in runs}
    reps = sorted({r.get("repeat", 0) for r in runs})
    out: dict[str, list[float]] = {k: [] for k in RATIOS}
    out["wall_over_lower_bound"] = []
    out[ADJUSTED] = []
    out[HOST_ADJUSTED] = []
    for k in reps:
        p, b = by.get((policy, k)), by.get((base, k))
        if p is None:
            continue
        if p.get("wall_over_lower_bound") is not None:
            out["wall_over_lower_bound"].append(float(p["wall_over_lower_bound"]))
        if b is None:
            continue
        for name, x in ratios(p, b).items():
            if x is not None:
                out[name].append(x)
        adjusted = speed_adjusted_speedup(p, b)
        if adjusted is not None:
            out[ADJUSTED].append(adjusted)
        host = host_adjusted_speedup(p, b)
        if host is not None:
            out[HOST_ADJUSTED].append(host)
    return out


def summarize_repeats(runs: list[dict[str, Any]], base: str = "stock") -> dict[str, dict[str, Any]]:
    """Per policy: each ratio's per-repeat values, median and bootstrap 95% interval; token totals per repeat."""
    summary: dict[str, dict[str, Any]] = {}
    for policy in dict.fromkeys(r["policy"] for r in runs):
        entry: dict[str, Any] = {
            "repeats": sum(r["policy"] == policy for r in runs),
            "tokens": [r["total_tokens"] for r in runs if r["policy"] == policy],
            "wall_s": [round(r["wall_s"], 2) for r in runs if r["policy"] == policy],
        }
        shares = [r["identity"]["share"] for r in runs if r["policy"] == policy and r.get("identity")]
        if shares:
            entry["identical_share"] = shares
        for name, xs in paired_ratios(runs, policy, base).items():
            if xs and not (policy == base and (name in RATIOS or name in (ADJUSTED, HOST_ADJUSTED))):
                med, lo, hi = bootstrap_median(xs)
                entry[name] = {"values": [round(x, 4) for x in xs], "median": med, "ci95": [lo, hi]}
        summary[policy] = entry
    return summary
