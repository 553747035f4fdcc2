"""Write the small, committed summary of a bench report (the README's figures are checked against it).

    PYTHONPATH=. .venv/bin/python scripts/bench_summary.py runs/bench_replay_r3/report.json results/bench_replay.json \
        --command "seer-verl bench policies=[stock,seer,oracle] repeats=3" --commit abc1234

Keeps per run: policy, repeat, wall, tail, tokens, tok/s, preemptions, wall / lower bound, identity with the first
run (share, divergent rows); and the report's per-policy summary (paired ratios, medians, bootstrap intervals).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def compact(report: dict, command: str, commit: str) -> dict:
    runs = []
    for r in report["runs"]:
        ident = r.get("identity") or {}
        runs.append({
            "policy": r["policy"], "repeat": r.get("repeat", 0) + 1, "wall_s": round(r["wall_s"], 1),
            "tail_s": round(r["tail_s"], 1), "tokens": r["total_tokens"], "tok_s": round(r["throughput_tok_s"], 1),
            "preemptions": r["num_preemptions"], "wall_over_lower_bound": round(r["wall_over_lower_bound"], 3),
            "identical_share": ident.get("share"), "divergences": ident.get("divergences", []),
        })
    return {"command": command, "commit": commit, "workload": report["workload_desc"], "notes": report["notes"],
            "runs": runs, "summary": report.get("summary", {})}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report")
    ap.add_argument("out")
    ap.add_argument("--command", required=True)
    ap.add_argument("--commit", required=True)
    a = ap.parse_args()
    data = compact(json.loads(Path(a.report).read_text()), a.command, a.commit)
    Path(a.out).write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
