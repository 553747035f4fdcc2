"""`seer-verl compare`: run verl's own trainer with stock rollout and with Seer, same data/seed/engines, and
compare per-iteration times (verl's ``timing_s/*``), reward and response length.

    seer-verl compare                                   # 3 GRPO iterations each, seed 0
    seer-verl compare --steps 10 --seeds 0,1 --out runs/compare -- trainer.n_gpus_per_node=2

Each run is ``recipes/run_verl.sh <config> trainer.total_training_steps=N data.seed=S`` with verl's file logger;
the per-step metrics land in ``<out>/<config>_seed<S>.jsonl``. The summary (``<out>/compare.json``), a table
and plots (``iteration_time.png``, ``reward.png``) are written next to them. Ratios average iterations 2..N
(iteration 1 includes one-time warm-up).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TIMING_KEYS = ("timing_s/gen", "timing_s/old_log_prob", "timing_s/ref", "timing_s/values", "timing_s/adv",
               "timing_s/update_critic", "timing_s/update_actor", "timing_s/update_weights", "timing_s/step")
CURVE_KEYS = ("critic/score/mean", "response_length/mean", "training/rollout_probs_diff_mean")


def run_one(config: str, seed: int, steps: int, out: Path, extra: list[str]) -> list[dict[str, Any]]:
    metrics = out / f"{config}_seed{seed}.jsonl"
    metrics.unlink(missing_ok=True)
    log = out / f"{config}_seed{seed}.log"
    env = dict(os.environ, VERL_FILE_LOGGER_PATH=str(metrics))
    cmd = ["bash", str(ROOT / "recipes" / "run_verl.sh"), config, f"trainer.total_training_steps={steps}",
           f"data.seed={seed}", f"actor_rollout_ref.rollout.seed={seed}", "trainer.logger=[console,file]",
           f"trainer.experiment_name={config}_seed{seed}", *extra]
    t0 = time.time()
    with open(log, "w") as f:
        r = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, cwd=out)
    if r.returncode != 0:
        raise RuntimeError(f"{config} seed {seed} failed (exit {r.returncode}); see {log}")
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    steps_out = [row.get("data", row) for row in rows]
    print(f"{config} seed {seed}: {len(steps_out)} iterations in {time.time() - t0:.0f} s", flush=True)
    return steps_out


def summarize(runs: dict[str, dict[int, list[dict[str, Any]]]]) -> dict[str, Any]:
    def mean_from_2(rows: list[dict[str, Any]], key: str) -> float | None:
        vals = [float(r[key]) for r in rows[1:] if key in r] or [float(r[key]) for r in rows if key in r]
        return sum(vals) / len(vals) if vals else None

    table: dict[str, dict[str, float | None]] = {}
    for config, by_seed in runs.items():
        for key in TIMING_KEYS:
            vals = [v for rows in by_seed.values() if (v := mean_from_2(rows, key)) is not None]
            table.setdefault(config, {})[key] = sum(vals) / len(vals) if vals else None
    configs = list(runs)
    ratios = {}
    if len(configs) >= 2:
        base, other = configs[0], configs[1]
        for key in TIMING_KEYS:
            a, b = table[base].get(key), table[other].get(key)
            ratios[key] = (a / b) if a and b else None
    curves = {c: {str(s): {k: [r.get(k) for r in rows] for k in CURVE_KEYS + TIMING_KEYS}
                  for s, rows in by_seed.items()} for c, by_seed in runs.items()}
    return {"mean_iter2_onward": table, "speedup_first_over_second": ratios, "curves": curves}


def plot(summary: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for fname, keys, title in (
        ("iteration_time.png", ("timing_s/step", "timing_s/gen"), "iteration time (s): solid step, dashed gen"),
        ("reward.png", ("critic/score/mean", "response_length/mean"), "reward (left) and response length (right)"),
    ):
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8)) if fname == "reward.png" else plt.subplots(1, 1, figsize=(7, 3.8))
        axes = list(axes) if fname == "reward.png" else [axes, axes]
        for c, by_seed in summary["curves"].items():
            for s, cur in by_seed.items():
                for i, k in enumerate(keys):
                    ys = cur[k]
                    ax = axes[i]
                    ls = "-" if (i == 0 or fname == "reward.png") else "--"
                    ax.plot(range(1, len(ys) + 1), ys, ls, marker="o", ms=3, label=f"{c} s{s}" if i == 0 else None)
        for ax, k in zip(axes, keys):
            ax.set_xlabel("iteration")
            ax.set_ylabel(k)
        axes[0].legend(fontsize=8)
        fig.suptitle(title)
        fig.tight_layout()
        p = out / fname
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(prog="seer-verl compare", description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=3, help="training iterations per run (default 3)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds, each run for every config")
    p.add_argument("--configs", default="grpo_stock,grpo_seer", help="configs/ names; the first is the baseline")
    p.add_argument("--out", default="runs/compare", help="output folder")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error(f"--steps={args.steps}: must be >= 1")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        p.error(f"--seeds={args.seeds!r}: expected comma-separated integers")
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    from seer_verl.cli import config_dir

    for c in configs:
        if not (config_dir() / f"{c}.yaml").is_file():
            p.error(f"--configs: {c!r} is not a config in {config_dir()}")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for seed in seeds:
        for c in configs:
            runs.setdefault(c, {})[seed] = run_one(c, seed, args.steps, out, extra)
    summary = summarize(runs)
    (out / "compare.json").write_text(json.dumps(summary, indent=1, default=float))
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"verl trainer, mean of iterations 2..{args.steps} (seconds)")
    t.add_column("timing")
    for c in configs:
        t.add_column(c, justify="right")
    t.add_column(f"{configs[0]} / {configs[-1]}", justify="right")
    for key in TIMING_KEYS:
        vals = [summary["mean_iter2_onward"][c].get(key) for c in configs]
        if all(v is None for v in vals):
            continue
        ratio = summary["speedup_first_over_second"].get(key)
        t.add_row(key, *[f"{v:.1f}" if v is not None else "-" for v in vals], f"{ratio:.2f}x" if ratio else "-")
    console = Console(record=True, width=120)
    console.print(t)
    (out / "compare_table.txt").write_text(console.export_text())
    for path in plot(summary, out):
        console.print(f"plot: {path}")
    return 0
