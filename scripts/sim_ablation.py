"""Seeded simulator ablation: each Seer policy's rollout-time ratio over stock, median over seeds.

    .venv/bin/python scripts/sim_ablation.py cpu_synth seeds=5 continuation=first kv_reserve=1
    .venv/bin/python scripts/sim_ablation.py cpu_synth seeds=5 continuation=policy num_groups=8

Every ``key=value`` other than ``seeds`` is a workload override of ``seer-verl simulate`` (see its help). Prints
one line: the overrides, then per policy the median of ``stock wall_s / policy wall_s`` and each seed's.
"""

from __future__ import annotations

import statistics
import sys

from seer_verl.sim.cli import _value
from seer_verl.sim.runner import simulate
from seer_verl.sim.workloads import make_workload

POLICIES = ("divided", "seer", "oracle")


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    workload, over = argv[0], {}
    for a in argv[1:]:
        if "=" not in a:
            raise SystemExit(f"sim_ablation: expected key=value, got {a!r}")
        k, v = a.split("=", 1)
        over[k] = _value(v)
    seeds = int(over.pop("seeds", 3))
    if seeds < 1:
        raise SystemExit(f"sim_ablation: seeds must be >= 1, got {seeds}")
    ratios: dict[str, list[float]] = {p: [] for p in POLICIES}
    for seed in range(seeds):
        w = make_workload(workload, seed=seed, **over)
        stock = simulate(w, "stock", seed=seed, keep_requests=False)["wall_s"]
        for p in POLICIES:
            ratios[p].append(stock / simulate(w, p, seed=seed, keep_requests=False)["wall_s"])
    cells = "  ".join(f"{p} {statistics.median(v):.3f} [{' '.join(f'{x:.2f}' for x in v)}]" for p, v in ratios.items())
    print(f"{workload} {over}  {cells}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
