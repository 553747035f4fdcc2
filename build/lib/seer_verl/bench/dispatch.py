"""`seer-verl dispatch-bench`: the controller's per-decision cost at 100 / 1K / 10K requests (target < 1 ms).

    seer-verl dispatch-bench [--sizes 100,1000,10000] [--decisions 2000] [--out runs/dispatch.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.table import Table

    from seer_verl.core.microbench import run_dispatch_microbench

    p = argparse.ArgumentParser(prog="seer-verl dispatch-bench", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="100,1000,10000", help="comma-separated request counts")
    p.add_argument("--decisions", type=int, default=2000, help="timed complete+dispatch cycles per size")
    p.add_argument("--engines", type=int, default=8)
    p.add_argument("--out", default=None, help="optional JSON output path")
    args = p.parse_args(argv)
    try:
        sizes = tuple(int(x) for x in args.sizes.split(","))
    except ValueError:
        p.error(f"--sizes={args.sizes!r}: expected comma-separated integers, e.g. 100,1000,10000")
    rows = []
    for mode in ("inflight", "kv"):
        rows += run_dispatch_microbench(sizes=sizes, decisions=args.decisions, num_engines=args.engines, mode=mode)
    t = Table(title="Seer controller: one decision (complete a chunk + dispatch the next)")
    for c in ("requests", "regime", "mean µs", "p50 µs", "p99 µs", "cpu mean µs", "< 1 ms"):
        t.add_column(c, justify="right")
    for r in rows:
        t.add_row(str(r["n_requests"]), str(r["mode"]), f"{r['mean_us']:.1f}", f"{r['p50_us']:.1f}",
                  f"{r['p99_us']:.1f}", f"{r['cpu_mean_us']:.1f}", "yes" if r["p99_us"] < 1000 else "NO")
    Console().print(t)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0
