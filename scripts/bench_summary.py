"""Write the small, committed summary of a bench report (the README's figures are checked against it).

    PYTHONPATH=. .venv/bin/python scripts/bench_summary.py runs/bench_replay_r3/report.json results/bench_replay.json \
        --command "seer-verl bench policies=[stock,seer,oracle] repeats=3" --commit abc1234

Keeps per run: policy, repeat, wall, tail, tokens, tok/s, preemptions, host speed probes, CPU seconds by role, wall / lower bound,
identity with the first run (share, divergent rows), speculation counts where it ran; and the per-policy summary (paired ratios against stock, or against the first policy
when stock did not run; medians, bootstrap intervals).

``--for-sim``: instead, the first repeat of every policy with what ``seer-verl simulate workload=cpu_bench
report=PATH`` reads (per request: row, group, length, engines; the engines, KV and workload), for the simulator's
validation tests (``tests/sim/data``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def compact(report: dict, command: str, commit: str) -> dict:
    from seer_verl.bench.report import summary_base
    from seer_verl.bench.stats import summarize_repeats

    base = summary_base(report["runs"])  # recomputed: reports written before summary_base compared with stock only
    runs = []
    for r in report["runs"]:
        ident = r.get("identity") or {}
        runs.append({
            "policy": r["policy"], "repeat": r.get("repeat", 0) + 1, "wall_s": round(r["wall_s"], 1),
            "tail_s": round(r["tail_s"], 1), "tokens": r["total_tokens"], "tok_s": round(r["throughput_tok_s"], 1),
            "preemptions": r["num_preemptions"], "wall_over_lower_bound": round(r["wall_over_lower_bound"], 3),
            "identical_share": ident.get("share"), "divergences": ident.get("divergences", []),
        })
        if r.get("host_speed"):  # the host's probed speed before / after the run (aggregate tok/s)
            runs[-1]["host_speed_tok_s"] = [round(r["host_speed"][k], 1) for k in ("before_tok_s", "after_tok_s")]
        if "cpu" in r:  # CPU seconds by role (reports from before the bench measured it have none)
            runs[-1]["cpu_s"] = {k: round(r["cpu"][f"{k}_s"], 1) for k in ("engine", "server", "control")}
            runs[-1]["cpu_outside_engines_share"] = r["cpu"]["outside_engines_share"]
            if r["cpu"].get("top_outside"):  # the busiest processes outside the engines (6d8afc5 on)
                runs[-1]["cpu_top_outside_s"] = r["cpu"]["top_outside"]
        if r.get("host_cpu"):  # shares of the machine: steal, other processes, the bench, idle (2026-12-07 on)
            runs[-1]["host_cpu"] = r["host_cpu"]
        sd = r.get("spec_decode") or {}
        if sd.get("draft_tokens"):  # speculation as vLLM counts it, plus Seer's own drafter metrics when it ran
            timing = r.get("verl_timing") or {}
            runs[-1]["spec"] = {"drafted": int(sd["draft_tokens"]), "accepted": int(sd["accepted_tokens"])} | {
                k.removeprefix("seer/sd_"): round(v, 3) for k, v in timing.items()
                if k in ("seer/sd_bulk_tokens_per_step", "seer/sd_tail_tokens_per_step", "seer/sd_engine_tree_share",
                         "seer/sd_steps_on_frac")}
    return {"command": command, "commit": commit, "workload": report["workload_desc"], "notes": report["notes"],
            "runs": runs, "summary": summarize_repeats(report["runs"], base=base), "summary_base": base}


def for_sim(report: dict, command: str, commit: str) -> dict:
    runs = []
    for r in report["runs"]:
        if r.get("repeat", 0) != 0:
            continue
        runs.append({k: r[k] for k in ("policy", "wall_s", "tail_s", "throughput_tok_s", "num_preemptions",
                                       "total_tokens", "lower_bound_s")}
                    | {"requests": [{k: q[k] for k in ("row", "group", "length", "engines")} for q in r["requests"]]})
    return {"command": command, "commit": commit, "workload_desc": report["workload_desc"],
            "workload": report["workload"], "engines": report["engines"], "notes": report["notes"], "runs": runs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report")
    ap.add_argument("out")
    ap.add_argument("--command", required=True)
    ap.add_argument("--commit", required=True)
    ap.add_argument("--for-sim", action="store_true", help="the simulator's cpu_bench input (first repeat)")
    a = ap.parse_args()
    report = json.loads(Path(a.report).read_text())
    data = (for_sim if a.for_sim else compact)(report, a.command, a.commit)
    Path(a.out).write_text(json.dumps(data, indent=None if a.for_sim else 1, separators=None) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
