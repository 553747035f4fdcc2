"""The bench report: JSON (top-level ``runs``), a rich table with ratios vs ``stock``, and matplotlib plots."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from seer_verl.run_metrics import add_vs_stock


def print_table(report: dict[str, Any], show: Any = None) -> str:
    """The tables (and notes) as text; printed on ``show`` (a rich Console) too when given."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"seer-verl bench — {report['workload_desc']}")
    for col in ("policy", "rep", "identical", "wall s", "tail s", "tail %", "1st req s", "tok/s", "requests", "tokens",
                "preempt", "CPU out %", "other load %", "host tok/s", "lower bd s", "wall/LB", "SD acc/draft",
                "SD tok/step bulk|tail", "speed-up vs stock"):
        t.add_column(col, justify="right")
    for r in report["runs"]:
        vs = r.get("vs_stock", {}).get("wall_speedup")
        sd = r.get("spec_decode") or {}
        vt = r.get("verl_timing") or {}
        acc = f"{int(sd['accepted_tokens'])}/{int(sd['draft_tokens'])}" if sd.get("draft_tokens") else "-"
        tps = (f"{vt['seer/sd_bulk_tokens_per_step']:.2f}|{vt['seer/sd_tail_tokens_per_step']:.2f}"
               if "seer/sd_tail_tokens_per_step" in vt else "-")
        ident = r.get("identity")
        t.add_row(
            r["policy"], str(r.get("repeat", 0) + 1), f"{100 * ident['share']:.0f}%" if ident else "-",
            f"{r['wall_s']:.1f}", f"{r['tail_s']:.1f}", f"{100 * r['tail_s'] / r['wall_s']:.0f}",
            f"{r['first_request_s']:.1f}" if "first_request_s" in r else "-", f"{r['throughput_tok_s']:.1f}", str(r["num_requests"]), str(r["total_tokens"]), str(r["num_preemptions"]),
            f"{100 * r['cpu']['outside_engines_share']:.0f}" if "cpu" in r else "-",
            f"{100 * r['host_cpu']['external']:.0f}" if r.get("host_cpu") else "-",
            f"{r['host_speed']['tok_s']:.0f}" if r.get("host_speed") else "-",
            f"{r['lower_bound_s']:.1f}" if r.get("lower_bound_s") else "-",
            f"{r['wall_over_lower_bound']:.2f}" if r.get("wall_over_lower_bound") else "-",
            acc, tps, f"{vs:.2f}x" if vs else "-",
        )
    console = Console(record=True, width=170, file=open(os.devnull, "w"))  # noqa: SIM115 - recorded, not shown
    shown: list[Any] = [t]
    summary = report.get("summary") or {}
    if report.get("repeats", 1) > 1 and summary:
        base = report.get("summary_base", "stock")
        st = Table(title=f"{report['repeats']} repeats: median \\[bootstrap 95% interval] of the paired ratios vs "
                         f"{base} (each repeat against the {base} run of the same repeat)")
        for col in ("policy", "wall speed-up", "host-speed adjusted", "other-load adjusted", "tok/s ratio", "tail ratio",
                    "wall / lower bound", "tokens", "identical"):
            st.add_column(col, justify="right")

        def cell(e: dict[str, Any], k: str) -> str:
            v = e.get(k)
            return f"{v['median']:.3f} \\[{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}]" if v else "-"

        for pol, e in summary.items():
            ids = e.get("identical_share")
            st.add_row(pol, cell(e, "wall_speedup"), cell(e, "wall_speedup_speed_adjusted"),
                       cell(e, "wall_speedup_host_adjusted"), cell(e, "throughput_ratio"),
                       cell(e, "tail_ratio"), cell(e, "wall_over_lower_bound"), "/".join(str(x) for x in e["tokens"]),
                       f"{100 * min(ids):.0f}%" if ids else "-")
        shown.append(st)
    shown += [f"  {k}: {v}" for k, v in report.get("notes", {}).items()]
    for item in shown:
        console.print(item)
        if show is not None:
            show.print(item)
    return console.export_text()


def plot(report: dict[str, Any], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    runs = report["runs"]
    # 1. finish-time CDF per policy
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in runs:
        f = sorted(q["finish_s"] for q in r["requests"])
        rep = f" #{r.get('repeat', 0) + 1}" if report.get("repeats", 1) > 1 else ""
        ax.step(f, [(i + 1) / len(f) for i in range(len(f))], where="post",
                label=f"{r['policy']}{rep} ({r['wall_s']:.0f}s)")
    ax.axhline(0.9, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("time since rollout start (s)")
    ax.set_ylabel("fraction of requests finished")
    ax.set_title("Finish-time CDF (above the dashed line: the tail)")
    ax.legend()
    fig.tight_layout()
    p = out_dir / "finish_cdf.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)
    # 2. per-engine timeline: running requests and KV usage, one row per policy
    n_eng = report["engines"]["count"]
    fig, axes = plt.subplots(len(runs), 1, figsize=(9, 2.6 * len(runs)), squeeze=False, sharex=True)
    for ax, r in zip(axes[:, 0], runs):
        ax2 = ax.twinx()
        for e, tl in enumerate(r["engine_timelines"][:n_eng]):
            (line,) = ax.plot(tl["t"], tl["running"], lw=1.2, label=f"engine {e} running")
            ax2.plot(tl["t"], [100 * k for k in tl["kv_usage"]], lw=0.8, ls=":", color=line.get_color())
        ax.set_ylabel("running reqs")
        ax2.set_ylabel("KV used % (dotted)")
        ax2.set_ylim(0, 105)
        ax.set_title(f"{r['policy']}: wall {r['wall_s']:.0f}s, tail {r['tail_s']:.0f}s, "
                     f"preemptions {r['num_preemptions']}")
        ax.legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("time since rollout start (s)")
    fig.tight_layout()
    p = out_dir / "engine_timeline.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)
    return paths


def summary_base(runs: list[dict[str, Any]]) -> str:
    """The policy the repeats' ratios are taken against: stock when it ran, else the first policy of the bench
    (``policies=[seer,seer_sd]`` gives seer_sd against seer)."""
    names = list(dict.fromkeys(r["policy"] for r in runs))
    return "stock" if "stock" in names else names[0]


def write(report: dict[str, Any], out: Path, show: Any = None) -> tuple[Path, list[Path]]:
    from seer_verl.bench.stats import summarize_repeats

    out.parent.mkdir(parents=True, exist_ok=True)
    add_vs_stock(report["runs"])
    report["summary_base"] = summary_base(report["runs"])
    report["summary"] = summarize_repeats(report["runs"], base=report["summary_base"])
    out.write_text(json.dumps(report, indent=1, default=float))
    text = print_table(report, show)
    (out.parent / (out.stem + "_table.txt")).write_text(text)
    return out, plot(report, out.parent)
