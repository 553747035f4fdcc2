"""Seer's chunk boundaries in a real bench run against the simulator on the same lengths.

    .venv/bin/python scripts/boundary_waits.py runs/heavy/report.json                 # every Seer-like run
    .venv/bin/python scripts/boundary_waits.py runs/heavy/report.json seer kv_reserve=auto_new

For each run of the report whose requests were chunked (policy given, or every run but stock's and stock_suffix's),
and for the simulator (``workload=cpu_bench``, the run's own lengths, the given overrides) it prints how the chunk boundaries
went: boundaries, waits over 1 s (count, total seconds), moves to another engine, the wait after the first chunk of
the first wave (requests started in the run's first 2 s), the share of chunk ends within 50 ms of another on the same
engine, and the engines' prefill (the bench's vLLM counters; the simulator's own count). Times are seconds from the
run's first dispatch. This is how docs/kv_pressure.md compares what the simulator predicts at a boundary with what
the engines did.
"""

from __future__ import annotations

import json
import statistics
import sys
from typing import Any

from seer_verl.sim.cli import _value
from seer_verl.sim.policies import POLICIES
from seer_verl.sim.runner import simulate
from seer_verl.sim.workloads import make_workload

WAIT_S = 1.0
CLUSTER_S = 0.05
FIRST_WAVE_S = 2.0
#: the simulator's overrides that stand for a bench arm's Seer config
ARMS: dict[str, dict[str, Any]] = {"seer_auto_new": {"kv_reserve": "auto_new"}, "seer_start": {"precedence": "start"},
                                 "seer_no_tail": {"tail_balance": None, "cache_affinity": False}}


def sim_policy_of(policy: str) -> str:
    """The simulator's policy for a bench arm: itself where the simulator has it (``seer_sd`` drafts there too), else
    ``seer`` for a Seer variant (``seer_sd_off``: engines that draft nothing; ``seer_auto_new``: see ``ARMS``)."""
    if policy in POLICIES:
        return policy
    if policy.startswith("seer"):
        return "seer"
    raise SystemExit(f"boundary_waits: the simulator has no policy for the bench arm {policy!r}; "
                     f"it has {', '.join(POLICIES)} and simulates other seer_* arms as seer")


def boundary_stats(requests: list[dict[str, Any]]) -> dict[str, Any]:
    """The boundary figures of one run from its per-request chunk intervals ``(engine, start, end)``."""
    t0 = min(iv[1] for q in requests for iv in q["intervals"])
    waits: list[float] = []
    moves = 0
    first_wave: list[float] = []
    ends: dict[int, list[float]] = {}
    for q in requests:
        ivs = sorted(q["intervals"], key=lambda x: x[1])
        for e, _s, t in ivs:
            ends.setdefault(int(e), []).append(t)
        for a, b in zip(ivs, ivs[1:]):
            waits.append(b[1] - a[2])
            moves += int(a[0] != b[0])
        if len(ivs) > 1 and ivs[0][1] - t0 <= FIRST_WAVE_S:
            first_wave.append(ivs[1][1] - ivs[0][2])
    clustered = total = 0
    for ts in ends.values():
        ts.sort()
        for i, t in enumerate(ts):
            total += 1
            near = (i > 0 and t - ts[i - 1] <= CLUSTER_S) or (i + 1 < len(ts) and ts[i + 1] - t <= CLUSTER_S)
            clustered += int(near)
    long_waits = [w for w in waits if w > WAIT_S]
    fw = sorted(first_wave)
    return {
        "boundaries": len(waits),
        "waits_over_1s": len(long_waits),
        "wait_total_s": round(sum(long_waits), 1),
        "moves": moves,
        "first_wave": len(fw),
        "first_wave_wait_median_s": round(statistics.median(fw), 1) if fw else None,
        "first_wave_wait_max_s": round(fw[-1], 1) if fw else None,
        "first_wave_waiting_over_10s": sum(1 for w in fw if w > 10),
        "clustered_ends": round(clustered / total, 2) if total else None,
    }


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    path, rest = argv[0], argv[1:]
    policies = [a for a in rest if "=" not in a]
    over = {k: _value(v) for k, v in (a.split("=", 1) for a in rest if "=" in a)}
    rep = json.loads(open(path).read())
    runs = [r for r in rep["runs"] if (r["policy"] in policies if policies else not r["policy"].startswith("stock"))]
    if not runs:
        raise SystemExit(f"boundary_waits: no run of {policies or 'a chunked policy'} in {path} "
                         f"(runs: {sorted({r['policy'] for r in rep['runs']})})")
    for r in runs:
        real = boundary_stats(r["requests"])
        real["prefill_computed"] = (r.get("prefill") or {}).get("computed_tokens")
        real["wall_s"] = round(r["wall_s"], 1)
        real["tail_s"] = round(r["tail_s"], 1)
        sim_policy = sim_policy_of(r["policy"])
        arm = {**ARMS.get(r["policy"], {}), **over}
        w = make_workload("cpu_bench", report=path, lengths_from=r["policy"], **arm)
        s = simulate(w, sim_policy)
        sim = boundary_stats(s["requests"])
        sim["prefill_computed"] = s["prefill_tokens"]
        sim["wall_s"] = round(s["wall_s"], 1)
        sim["tail_s"] = round(s["tail_s"], 1)
        print(f"{r['policy']} (repeat {r.get('repeat', 0)}), simulated as {sim_policy} {arm or ''}")
        for k in real:
            print(f"  {k:28s} real {real[k]!s:>10}   sim {sim[k]!s:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
