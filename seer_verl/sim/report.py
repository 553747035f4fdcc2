"""Simulator report: JSON, a Table-4-style rich table (speed-ups vs stock next to the paper's), plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from seer_verl.run_metrics import add_vs_stock, set_lower_bound

__all__ = ["add_ratios", "plot", "print_table", "print_validation", "write"]


def add_ratios(report: dict[str, Any]) -> None:
    """Each run's lower bound and ``vs_stock`` ratios (:mod:`seer_verl.run_metrics`, the bench's keys), plus the
    paper's speed-up and the relative error where the workload has one; ``seer_over_oracle``."""
    runs = report["runs"]
    paper = report.get("paper_ratios", {})
    lb = report.get("lower_bound", {}).get("lower_bound_s")
    for r in runs:
        set_lower_bound(r, lb)
    add_vs_stock(runs)
    for r in runs:
        vs = r.get("vs_stock")
        if vs is not None and r["policy"] in paper and vs["wall_speedup"] is not None:
            vs["paper_speedup"] = paper[r["policy"]]
            vs["speedup_error"] = vs["wall_speedup"] / paper[r["policy"]] - 1.0
    oracle = next((r for r in runs if r["policy"] == "oracle"), None)
    seer = next((r for r in runs if r["policy"] == "seer"), None)
    if oracle and seer:
        report["seer_over_oracle"] = oracle["wall_s"] / seer["wall_s"]


def print_table(report: dict[str, Any]) -> str:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"seer-verl simulate: {report['workload']['desc']}")
    for col in ("policy", "rollout s", "tail s", "tail %", "tok/s", "preempt", "util", "/ lower bd",
                "speed-up", "paper", "error", "sim wall s"):
        t.add_column(col, justify="right")
    for r in report["runs"]:
        vs = r.get("vs_stock", {})
        paper = vs.get("paper_speedup")
        err = vs.get("speedup_error")
        t.add_row(
            r["policy"], f"{r['wall_s']:.1f}", f"{r['tail_s']:.1f}",
            f"{100 * r['tail_s'] / r['wall_s']:.0f}" if r["wall_s"] else "-",
            f"{r['throughput_tok_s']:.1f}", str(r["num_preemptions"]), f"{r['utilisation']:.2f}",
            f"{r['wall_over_lower_bound']:.2f}" if r.get("wall_over_lower_bound") else "-",
            f"{vs['wall_speedup']:.2f}x" if vs.get("wall_speedup") else "-",
            f"{paper:.2f}x" if paper else "-",
            f"{100 * err:+.0f}%" if err is not None else "-",
            f"{r['sim_wall_s']:.1f}",
        )
    console = Console(record=True, width=150)
    console.print(t)
    lb = report.get("lower_bound", {})
    if lb:
        console.print(f"  lower bound {lb['lower_bound_s']:.1f} s (work {lb['work_bound_s']:.1f} s at "
                      f"{lb['aggregate_tok_s']:.0f} tok/s aggregate, longest request {lb['serial_bound_s']:.1f} s; "
                      f"without SD {lb['lower_bound_nosd_s']:.1f} s)")
    if "seer_over_oracle" in report:
        console.print(f"  seer reaches {100 * report['seer_over_oracle']:.1f}% of oracle throughput "
                      f"(paper: 96% on Qwen2-VL-72B)")
    console.print(f"  simulated {report['workload']['num_requests']} requests x {len(report['runs'])} policies "
                  f"in {report['sim_wall_s']:.1f} s")
    return console.export_text()


def print_validation(val: dict[str, Any]) -> str:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="validation: simulated vs measured wall time (cpu_bench, each run's own recorded lengths)")
    for col in ("policy", "tokens", "measured s", "simulated s", "error", "measured preempt", "sim preempt",
                "measured tail s", "sim tail s"):
        t.add_column(col, justify="right")
    for p, v in val["policies"].items():
        t.add_row(p, str(v["total_tokens"]), f"{v['measured_s']:.1f}", f"{v['simulated_s']:.1f}",
                  f"{100 * v['error']:+.1f}%", str(v["measured_preemptions"]), str(v["simulated_preemptions"]),
                  f"{v['measured_tail_s']:.1f}", f"{v['simulated_tail_s']:.1f}")
    console = Console(record=True, width=150)
    console.print(t)
    console.print(f"  step-time model: {val['step_model']}; mean |error| {100 * val['mean_abs_error']:.1f}%, "
                  f"max |error| {100 * val['max_abs_error']:.1f}%")
    return console.export_text()


def plot(report: dict[str, Any], out_dir: Path, stem: str = "sim") -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import warnings

    import matplotlib.pyplot as plt
    import numpy as np

    warnings.filterwarnings("ignore", category=RuntimeWarning, module=__name__)  # all-NaN columns after the end
    runs = report["runs"]
    paths = []
    # 1. finish-time CDF (the tail)
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in runs:
        f = sorted(q["finish_s"] for q in r.get("requests", []))
        if not f:
            continue
        ax.step(f, np.arange(1, len(f) + 1) / len(f), where="post", label=f"{r['policy']} ({r['wall_s']:.0f}s)")
    lb = report.get("lower_bound", {}).get("lower_bound_s")
    if lb:
        ax.axvline(lb, color="k", lw=0.8, ls=":", label=f"lower bound ({lb:.0f}s)")
    ax.axhline(0.9, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("simulated time since rollout start (s)")
    ax.set_ylabel("fraction of requests finished")
    ax.set_title(f"{report['workload']['name']}: finish-time CDF (above the dashed line: the tail)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = out_dir / f"{stem}_finish_cdf.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)
    # 2. utilisation timeline: running sequences per engine (mean, min-max band) and KV usage
    fig, axes = plt.subplots(len(runs), 1, figsize=(9, 2.4 * len(runs)), squeeze=False, sharex=True)
    t_end = max(r["wall_s"] for r in runs)
    grid = np.linspace(0, t_end, 400)
    for ax, r in zip(axes[:, 0], runs):
        run_m, kv_m = [], []
        for tl in r["engine_timelines"]:
            if not tl["t"]:
                continue
            idx = np.searchsorted(np.asarray(tl["t"]), grid, side="right") - 1
            ok = idx >= 0
            run = np.where(ok, np.asarray(tl["running"])[np.clip(idx, 0, None)], 0).astype(float)
            kv = np.where(ok, np.asarray(tl["kv_usage"])[np.clip(idx, 0, None)], 0.0)
            run[grid > r["wall_s"]] = np.nan
            kv[grid > r["wall_s"]] = np.nan
            run_m.append(run)
            kv_m.append(kv)
        R = np.array(run_m)
        K = np.array(kv_m)
        ax.fill_between(grid, np.nanmin(R, 0), np.nanmax(R, 0), alpha=0.25, label="running seqs (min-max over engines)")
        ax.plot(grid, np.nanmean(R, 0), lw=1.2, label="running seqs (mean)")
        ax2 = ax.twinx()
        ax2.plot(grid, 100 * np.nanmean(K, 0), lw=0.9, ls=":", color="C3")
        ax2.set_ylim(0, 105)
        ax2.set_ylabel("KV used % (dotted)")
        ax.set_ylabel("running")
        ax.set_title(f"{r['policy']}: {r['wall_s']:.0f}s, tail {r['tail_s']:.0f}s, util {r['utilisation']:.2f}, "
                     f"preemptions {r['num_preemptions']}", fontsize=9)
        ax.legend(loc="upper right", fontsize=7)
    axes[-1, 0].set_xlabel("simulated time (s)")
    fig.tight_layout()
    p = out_dir / f"{stem}_utilisation.png"
    fig.savefig(p, dpi=100)
    plt.close(fig)
    paths.append(p)
    return paths


def write(report: dict[str, Any], out: Path, plots: bool = True, keep_timelines: bool = True) -> tuple[Path, list[Path]]:
    out.parent.mkdir(parents=True, exist_ok=True)
    add_ratios(report)
    paths = plot(report, out.parent, out.stem) if plots else []
    if not keep_timelines:  # the engines' timelines and the requests' chunk intervals
        for r in report["runs"]:
            r.pop("engine_timelines", None)
            for q in r.get("requests", []):
                q.pop("intervals", None)
    out.write_text(json.dumps(report, indent=1, default=float))
    return out, paths
