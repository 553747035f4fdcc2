"""Seer over stock on the CPU bench's shapes in the simulator: one line per shape, median of seeds.

    .venv/bin/python scripts/sim_shapes.py                      # the shipped config, 10 seeds, ~30 s
    .venv/bin/python scripts/sim_shapes.py kv_reserve=1.0       # an override applied to every shape
    .venv/bin/python scripts/sim_shapes.py seeds=5 only=12x8    # the shapes whose name contains "12x8"

The shapes are the ones docs/kv_pressure.md reports on: two recorded real runs (their lengths, groups and verl's
placement lottery for stock) and ``cpu_synth`` at the light, default and heavy points, from 1,408 to 11,264 KV tokens
per engine. Every ``key=value`` other than ``seeds`` and ``only`` is a workload override of ``seer-verl simulate``.
Prints per shape the median over seeds of ``stock wall_s / policy wall_s`` for seer and oracle and the median
preemptions of stock and seer, then the geometric mean and the minimum of seer's medians.
"""

from __future__ import annotations

import math
import statistics
import sys

from seer_verl.sim.cli import _value
from seer_verl.sim.runner import simulate
from seer_verl.sim.workloads import make_workload

RECORDED = {"stock_placement": "request"}
SHAPES: list[tuple[str, str, dict]] = [
    ("demo 3x8/512/2912, recorded", "cpu_bench", {"report": "results/bench_demo_3x8_b0c7281_lengths.json", **RECORDED}),
    ("default 8x8/1024/5825, recorded", "cpu_bench",
     {"report": "results/bench_default_e811470_lengths.json", **RECORDED}),
    ("3x8/512/2912", "cpu_synth", {"num_groups": 3, "group_size": 8, "max_tokens": 512, "kv_capacity_tokens": 2912}),
    ("4x8/512/2912", "cpu_synth", {"num_groups": 4, "group_size": 8, "max_tokens": 512, "kv_capacity_tokens": 2912}),
    ("6x4/512/2912", "cpu_synth", {"num_groups": 6, "group_size": 4, "max_tokens": 512, "kv_capacity_tokens": 2912}),
    ("2x16/512/2912", "cpu_synth", {"num_groups": 2, "group_size": 16, "max_tokens": 512, "kv_capacity_tokens": 2912}),
    ("8x8/512/2816", "cpu_synth", {"num_groups": 8, "group_size": 8, "max_tokens": 512, "kv_capacity_tokens": 2816}),
    ("8x8/512/1408", "cpu_synth", {"num_groups": 8, "group_size": 8, "max_tokens": 512, "kv_capacity_tokens": 1408}),
    ("4x8/512/5632", "cpu_synth", {"num_groups": 4, "group_size": 8, "max_tokens": 512, "kv_capacity_tokens": 5632}),
    ("8x8/1024/5632", "cpu_synth", {"num_groups": 8, "group_size": 8, "max_tokens": 1024, "kv_capacity_tokens": 5632}),
    ("12x8/1024/1408", "cpu_synth", {"num_groups": 12, "group_size": 8, "max_tokens": 1024, "kv_capacity_tokens": 1408}),
    ("12x8/1024/2816", "cpu_synth", {"num_groups": 12, "group_size": 8, "max_tokens": 1024, "kv_capacity_tokens": 2816}),
    ("12x8/1024/5632 (heavy)", "cpu_synth",
     {"num_groups": 12, "group_size": 8, "max_tokens": 1024, "kv_capacity_tokens": 5632}),
    ("12x8/1024/11264", "cpu_synth",
     {"num_groups": 12, "group_size": 8, "max_tokens": 1024, "kv_capacity_tokens": 11264}),
    ("24x4/1024/2816", "cpu_synth", {"num_groups": 24, "group_size": 4, "max_tokens": 1024, "kv_capacity_tokens": 2816}),
    ("6x16/1024/2816", "cpu_synth", {"num_groups": 6, "group_size": 16, "max_tokens": 1024, "kv_capacity_tokens": 2816}),
]


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    over: dict = {}
    for a in argv:
        if "=" not in a:
            raise SystemExit(f"sim_shapes: expected key=value, got {a!r}")
        k, v = a.split("=", 1)
        over[k] = _value(v)
    seeds = int(over.pop("seeds", 10))
    only = over.pop("only", None)
    if seeds < 1:
        raise SystemExit(f"sim_shapes: seeds must be >= 1, got {seeds}")
    medians = []
    print(f"overrides {over}, {seeds} seeds: stock wall / policy wall, median (preemptions stock / seer)")
    for name, workload, shape in SHAPES:
        if only is not None and str(only) not in name:
            continue
        ratio: dict[str, list[float]] = {"seer": [], "oracle": []}
        pre: dict[str, list[int]] = {"stock": [], "seer": []}
        for seed in range(seeds):
            w = make_workload(workload, seed=seed, **shape, **over)
            stock = simulate(w, "stock", seed=seed, keep_requests=False)
            pre["stock"].append(stock["num_preemptions"])
            for p in ratio:
                r = simulate(w, p, seed=seed, keep_requests=False)
                ratio[p].append(stock["wall_s"] / r["wall_s"])
                if p == "seer":
                    pre["seer"].append(r["num_preemptions"])
        m = {p: statistics.median(v) for p, v in ratio.items()}
        medians.append(m["seer"])
        print(f"{name:34s} seer {m['seer']:.3f}  oracle {m['oracle']:.3f}  "
              f"({statistics.median(pre['stock']):.0f} / {statistics.median(pre['seer']):.0f})", flush=True)
    if medians:
        geo = math.exp(statistics.mean(math.log(x) for x in medians))
        print(f"seer over {len(medians)} shapes: geometric mean {geo:.3f}, minimum {min(medians):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
