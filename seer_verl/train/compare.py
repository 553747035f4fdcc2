"""`seer-verl compare`: run verl's own trainer with stock rollout and with Seer, same data/seed/engines, and
compare per-iteration times (verl's ``timing_s/*``), reward and response length.

    seer-verl compare                                   # 3 GRPO iterations each, seed 0
    seer-verl compare --steps 10 --seeds 0,1 --out runs/compare -- trainer.n_gpus_per_node=2

Each run is ``recipes/run_verl.sh <config> trainer.total_training_steps=N data.seed=S`` with verl's file logger;
the per-step metrics land in ``<out>/<config>_seed<S>.jsonl``. The summary (``<out>/compare.json``), a table
and plots (``iteration_time.png``, ``reward.png``) are written next to them. Ratios average iterations 2..N
(iteration 1 includes one-time warm-up). The parity table compares reward, response length and
``training/rollout_probs_diff_mean`` of every config with the baseline's seed-to-seed spread (run-to-run noise);
``--report-only`` rebuilds everything from the ``.jsonl`` files of earlier runs, ``--wandb`` adds wandb (offline,
under ``<out>/wandb``), ``--tensorboard`` tensorboard (``<out>/tensorboard``). The screen shows one line per run
and a live progress line (iteration, last step and rollout time); verl's output goes to ``<out>/<config>_seed<S>.log``.

``--replay-seed N`` runs every config with replayable sampling (:mod:`seer_verl.replay`; stock verl through
``ReplayAgentLoopManager``): iteration k of every run trains on the same samples, so the iterations pair up. The
summary then adds per-iteration paired timing ratios (median, bootstrap 95% interval over iterations 2..N and seeds)
and the runs' identity: whether reward, response length and the actor's gradient norm stayed equal iteration by
iteration (equal samples and equal weights give equal values, up to numerics).
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
#: verl's per-token timings (ms per token of the batch): the phases' cost with the runs' different response lengths
#: taken out (each run samples its own responses, so a run with longer responses is slower for that alone)
PER_TOKEN_KEYS = ("timing_per_token_ms/gen", "timing_per_token_ms/update_actor", "perf/throughput")
CURVE_KEYS = ("critic/score/mean", "response_length/mean", "training/rollout_probs_diff_mean")


class TrainingProgress:
    """A rich renderable, the live line of one training run: ``grpo_seer seed 0  iteration 2/3  last step 29.2 s
    (gen 14.2 s)  95 s`` (iterations from the metrics verl's file logger appends after every step)."""

    def __init__(self, label: str, steps: int, metrics: Path) -> None:
        self.label, self.steps, self.metrics = label, steps, metrics
        self._t0 = time.time()

    def text(self) -> str:
        rows = _read_jsonl(self.metrics)
        last = ""
        if rows:
            r = rows[-1]
            last = f"  last step {float(r.get('timing_s/step', 0)):.1f} s (gen {float(r.get('timing_s/gen', 0)):.1f} s)"
        return (f"{self.label}  iteration {min(len(rows) + 1, self.steps)}/{self.steps}{last}  "
                f"{time.time() - self._t0:.0f} s")

    def __rich__(self) -> Any:
        from rich.spinner import Spinner

        return Spinner("dots", text=self.text())


def run_one(config: str, seed: int, steps: int, out: Path, extra: list[str], loggers: tuple[str, ...] = (),
            console: Any = None) -> list[dict[str, Any]]:
    """One verl training run: stdout/stderr to ``<out>/<config>_seed<S>.log`` (named on screen), a live progress
    line, metrics to ``<out>/<config>_seed<S>.jsonl``; ``loggers``: verl loggers beside console and file (wandb
    offline under ``<out>/wandb``, tensorboard under ``<out>/tensorboard/<config>_seed<S>``)."""
    from rich.console import Console
    from rich.live import Live

    console = console or Console(soft_wrap=True)  # a path is never broken across lines
    metrics = out / f"{config}_seed{seed}.jsonl"
    metrics.unlink(missing_ok=True)
    log = out / f"{config}_seed{seed}.log"
    env = dict(os.environ, VERL_FILE_LOGGER_PATH=str(metrics))
    if "wandb" in loggers:
        env.setdefault("WANDB_MODE", "offline")
        env.setdefault("WANDB_DIR", str(out))
    if "tensorboard" in loggers:
        env["TENSORBOARD_DIR"] = str(out / "tensorboard" / f"{config}_seed{seed}")
    cmd = ["bash", str(ROOT / "recipes" / "run_verl.sh"), config, f"trainer.total_training_steps={steps}",
           f"data.seed={seed}", f"actor_rollout_ref.rollout.seed={seed}",
           f"trainer.logger=[{','.join(['console', 'file', *loggers])}]",
           f"trainer.experiment_name={config}_seed{seed}", *extra]
    console.print(f"{config} seed {seed}: training {steps} iterations; verl output: {log}")
    t0 = time.time()
    progress = TrainingProgress(f"{config} seed {seed}", steps, metrics)
    with open(log, "w") as f, Live(progress, console=console, refresh_per_second=2, transient=True):
        r = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, cwd=out)
    if r.returncode != 0:
        raise RuntimeError(f"{config} seed {seed} failed (exit {r.returncode}); see {log}")
    steps_out = _logged(out, config, seed)
    console.print(f"{config} seed {seed}: {len(steps_out)} iterations in {time.time() - t0:.0f} s")
    return steps_out


STOCK_REPLAY_MANAGER = "seer_verl.replay.agent_loop.ReplayAgentLoopManager"
#: per-iteration values that are equal in two runs that train on the same samples with the same weights
IDENTITY_KEYS = ("critic/score/mean", "response_length/mean", "actor/grad_norm", "actor/pg_loss")


def replay_overrides(config: str, seed: int) -> list[str]:
    """Hydra overrides that make ``config`` sample replayably with ``seed``: ``seer.replay_seed``, plus, for a
    config with stock verl's agent-loop manager, the replay manager (verl's, with the replay key)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from seer_verl.paths import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        cfg = compose(config)
    out = [f"++seer.replay_seed={seed}"]
    if OmegaConf.select(cfg, "actor_rollout_ref.rollout.agent.agent_loop_manager_class", default=None) is None:
        out.append(f"++actor_rollout_ref.rollout.agent.agent_loop_manager_class={STOCK_REPLAY_MANAGER}")
    return out


def paired(runs: dict[str, dict[int, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Replayed runs: per config, per-iteration ratios against the baseline (same seed, same iteration; from
    iteration 2) of every phase in ``TIMING_KEYS`` (baseline / config: a speed-up), their median and bootstrap 95%
    interval; the share of each iteration that is rollout (gen / step); and per identity key the relative
    difference to the baseline per iteration."""
    from seer_verl.bench.stats import bootstrap_median

    def interval(xs: list[float]) -> dict[str, Any]:
        med, lo, hi = bootstrap_median(xs)
        return {"values": [round(x, 4) for x in xs], "median": med, "ci95": [lo, hi]}

    configs = list(runs)
    base = configs[0]
    out: dict[str, Any] = {}
    for c in configs[1:]:
        entry: dict[str, Any] = {}
        for key in TIMING_KEYS:
            xs = [float(b[key]) / float(r[key])
                  for s, rows in runs[c].items() if s in runs[base]
                  for b, r in list(zip(runs[base][s], rows))[1:] if key in b and key in r and float(r[key]) > 0]
            if xs:
                entry[key] = interval(xs)
        ident: dict[str, list[float | None]] = {}
        for key in IDENTITY_KEYS:
            ident[key] = [
                (abs(float(r[key]) - float(b[key])) / max(abs(float(b[key])), 1e-12)
                 if key in r and key in b else None)
                for s, rows in runs[c].items() if s in runs[base] for b, r in zip(runs[base][s], rows)]
        entry["relative_difference"] = ident
        pairs = [(b, r) for s, rows in runs[c].items() if s in runs[base] for b, r in list(zip(runs[base][s], rows))[1:]
                 if all(k in x and float(x[k]) > 0 for x in (b, r) for k in ("timing_s/gen", "timing_s/step"))]
        entry["rollout_share"] = [float(r["timing_s/gen"]) / float(r["timing_s/step"]) for _, r in pairs]
        entry["rollout_share_baseline"] = [float(b["timing_s/gen"]) / float(b["timing_s/step"]) for b, _ in pairs]
        # the step speed-up the rollout alone would give: the baseline's iteration with only its gen replaced
        gen_only = [float(b["timing_s/step"]) / (float(b["timing_s/step"]) - float(b["timing_s/gen"])
                                                 + float(r["timing_s/gen"])) for b, r in pairs]
        if gen_only:
            entry["step_from_gen_alone"] = interval(gen_only)
        out[c] = entry
    return out


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def parity(runs: dict[str, dict[int, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Training parity of every config against the first (the baseline, e.g. stock verl over >= 2 seeds).

    Per curve key: each run's mean over all iterations; the baseline's seed-to-seed spread (max - min of its seeds'
    means: the run-to-run noise); each other config's distance from the baseline mean; and the fraction of its
    iterations whose value lies inside the baseline's per-iteration [min, max] band over seeds; and a two-sided
    Mann-Whitney test of its per-iteration values against the baseline's (all seeds pooled; ``p`` small = the
    difference is larger than the iteration-to-iteration noise).
    """
    from seer_verl.speculative_tools.lossless import mann_whitney_u

    configs = list(runs)
    base = configs[0]
    out: dict[str, Any] = {}
    for key in CURVE_KEYS:
        per_run = {c: {s: _mean([float(r[key]) for r in rows if key in r]) for s, rows in by_seed.items()}
                   for c, by_seed in runs.items()}
        base_means = [v for v in per_run[base].values() if v is not None]
        entry: dict[str, Any] = {"run_means": {c: {str(s): v for s, v in m.items()} for c, m in per_run.items()}}
        if base_means:
            entry["baseline_mean"] = _mean(base_means)
            entry["baseline_seed_spread"] = max(base_means) - min(base_means) if len(base_means) > 1 else None
        n_iter = min(len(rows) for rows in runs[base].values())
        band = []
        for i in range(n_iter):
            vals = [float(rows[i][key]) for rows in runs[base].values() if key in rows[i]]
            band.append((min(vals), max(vals)) if vals else None)
        entry["baseline_band"] = band
        for c in configs[1:]:
            means = [v for v in per_run[c].values() if v is not None]
            inside = total = 0
            for rows in runs[c].values():
                for i, r in enumerate(rows[:n_iter]):
                    if key in r and band[i] is not None:
                        total += 1
                        inside += band[i][0] <= float(r[key]) <= band[i][1]
            xs = [float(r[key]) for rows in runs[c].values() for r in rows if key in r]
            ys = [float(r[key]) for rows in runs[base].values() for r in rows if key in r]
            entry[c] = {"mann_whitney_p": mann_whitney_u(xs, ys)["p"] if xs and ys else None,
                        "mean": _mean(means),
                        "distance_from_baseline": (abs(_mean(means) - entry["baseline_mean"])
                                                   if means and base_means else None),
                        "fraction_inside_baseline_band": inside / total if total else None}
        out[key] = entry
    return out


def summarize(runs: dict[str, dict[int, list[dict[str, Any]]]]) -> dict[str, Any]:
    def mean_from_2(rows: list[dict[str, Any]], key: str) -> float | None:
        vals = [float(r[key]) for r in rows[1:] if key in r] or [float(r[key]) for r in rows if key in r]
        return _mean(vals)

    table: dict[str, dict[str, float | None]] = {}
    for config, by_seed in runs.items():
        for key in TIMING_KEYS + PER_TOKEN_KEYS:
            vals = [v for rows in by_seed.values() if (v := mean_from_2(rows, key)) is not None]
            table.setdefault(config, {})[key] = _mean(vals)
    configs = list(runs)
    # speed-up of every config over the baseline (first config): baseline time / config time
    ratios: dict[str, dict[str, float | None]] = {}
    for other in configs[1:]:
        ratios[other] = {}
        for key in TIMING_KEYS + PER_TOKEN_KEYS:
            a, b = table[configs[0]].get(key), table[other].get(key)
            if key == "perf/throughput":  # tokens/s: higher is better
                a, b = b, a
            ratios[other][key] = (a / b) if a and b else None
    curves = {c: {str(s): {k: [r.get(k) for r in rows] for k in CURVE_KEYS + TIMING_KEYS}
                  for s, rows in by_seed.items()} for c, by_seed in runs.items()}
    return {"baseline": configs[0], "mean_iter2_onward": table, "speedup_over_baseline": ratios,
            "parity": parity(runs), "paired": paired(runs), "curves": curves}


def plot(summary: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    cfg_color = {c: colors[i % len(colors)] for i, c in enumerate(summary["curves"])}
    # iteration time: step (solid) and gen (dashed) per run
    fig, ax = plt.subplots(1, 1, figsize=(7, 3.8))
    for c, by_seed in summary["curves"].items():
        for j, (s, cur) in enumerate(by_seed.items()):
            for k, ls in (("timing_s/step", "-"), ("timing_s/gen", "--")):
                ys = cur[k]
                ax.plot(range(1, len(ys) + 1), ys, ls, marker="o", ms=3, color=cfg_color[c], alpha=1 - 0.3 * j,
                        label=f"{c} s{s}" if k == "timing_s/step" else None)
    ax.set_xlabel("iteration")
    ax.set_ylabel("seconds")
    ax.legend(fontsize=8)
    ax.set_title("iteration time: solid timing_s/step, dashed timing_s/gen")
    fig.tight_layout()
    paths.append(out / "iteration_time.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    # parity: the baseline's band over seeds (shaded) and every run's curve
    base = summary["baseline"]
    fig, axes = plt.subplots(1, len(CURVE_KEYS), figsize=(5.2 * len(CURVE_KEYS), 3.8))
    for ax, key in zip(axes, CURVE_KEYS):
        band = summary["parity"][key]["baseline_band"]
        xs = [i + 1 for i, b in enumerate(band) if b is not None]
        if xs and len(summary["curves"][base]) > 1:
            ax.fill_between(xs, [band[i - 1][0] for i in xs], [band[i - 1][1] for i in xs], color=cfg_color[base],
                            alpha=0.18, label=f"{base}: min-max over seeds")
        for c, by_seed in summary["curves"].items():
            for s, cur in by_seed.items():
                ys = [float("nan") if y is None else y for y in cur[key]]
                ax.plot(range(1, len(ys) + 1), ys, "-", marker="o", ms=3, color=cfg_color[c], lw=1,
                        label=f"{c} s{s}")
        ax.set_xlabel("iteration")
        ax.set_title(key, fontsize=10)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    paths.append(out / "reward.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def _read_jsonl(f: Path) -> list[dict[str, Any]]:
    """verl's file-logger records (``{"step": k, "data": {...}}`` per line), the metrics of each; a line still
    being written is skipped."""
    if not f.is_file():
        return []
    rows = []
    for line in f.read_text().splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        rows.append(r.get("data", r))
    return rows


def _logged(out: Path, config: str, seed: int) -> list[dict[str, Any]]:
    return _read_jsonl(out / f"{config}_seed{seed}.jsonl")


def load_runs(out: Path, configs: list[str], seeds: list[int]) -> dict[str, dict[int, list[dict[str, Any]]]]:
    """Metrics of earlier runs from ``<out>/<config>_seed<S>.jsonl`` (``--report-only``)."""
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for c in configs:
        for s in seeds:
            if rows := _logged(out, c, s):
                runs.setdefault(c, {})[s] = rows
    if not runs or configs[0] not in runs:
        raise FileNotFoundError(f"no metrics for {configs[0]} in {out}")
    return runs


def report(summary: dict[str, Any], out: Path, configs: list[str], replayed: bool = False) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(record=True, width=140)
    base = summary["baseline"]
    n = max(len(cur["timing_s/step"]) for by in summary["curves"].values() for cur in by.values())
    t = Table(title=f"verl trainer, mean of iterations 2..{n} (seconds, ms/token, tokens/s; ratio = speed-up of "
                    f"config over {base})")
    t.add_column("timing")
    for c in configs:
        t.add_column(c, justify="right")
    for c in configs[1:]:
        t.add_column(f"speed-up {c}", justify="right")
    for key in TIMING_KEYS + PER_TOKEN_KEYS:
        vals = [summary["mean_iter2_onward"][c].get(key) for c in configs]
        if all(v is None for v in vals):
            continue
        ratios = [summary["speedup_over_baseline"][c].get(key) for c in configs[1:]]
        t.add_row(key, *[f"{v:.1f}" if v is not None else "-" for v in vals],
                  *[f"{r:.2f}x" if r else "-" for r in ratios])
    console.print(t)
    p = Table(title=f"training parity (means over all iterations; noise = spread of {base}'s seeds)")
    p.add_column("metric")
    p.add_column(f"{base} seeds", justify="right")
    p.add_column("noise", justify="right")
    for c in configs[1:]:
        p.add_column(f"{c} (distance, inside band, MW p)", justify="right")
    for key, e in summary["parity"].items():
        seeds = ", ".join(f"{v:.4g}" for v in e["run_means"][base].values() if v is not None)
        noise = e.get("baseline_seed_spread")
        cells = []
        for c in configs[1:]:
            d = e.get(c, {})
            if d.get("mean") is None:
                cells.append("-")
                continue
            frac, mw = d.get("fraction_inside_baseline_band"), d.get("mann_whitney_p")
            cells.append(f"{d['mean']:.4g} ({d['distance_from_baseline']:.2g}, "
                         f"{'-' if frac is None else f'{100 * frac:.0f}%'}, {'-' if mw is None else f'{mw:.2f}'})")
        p.add_row(key, seeds, "-" if noise is None else f"{noise:.2g}", *cells)
    console.print(p)
    if replayed:
        q = Table(title=f"replayed runs (same samples): per phase, paired speed-up over {base} (its time / the "
                        f"config's), iterations 2..{n}, median [bootstrap 95%]")
        q.add_column("phase")
        for c in summary["paired"]:
            q.add_column(c, justify="right")

        def cell(d: dict[str, Any] | None) -> str:
            return f"{d['median']:.3f} [{d['ci95'][0]:.3f}, {d['ci95'][1]:.3f}]" if d else "-"

        entries = list(summary["paired"].values())
        for k in TIMING_KEYS:
            if any(k in e for e in entries):
                q.add_row(k, *(cell(e.get(k)) for e in entries))
        q.add_row("step, if only gen changed", *(cell(e.get("step_from_gen_alone")) for e in entries))
        share = [_mean(e["rollout_share"]) for e in entries]
        base_share = _mean(entries[0]["rollout_share_baseline"]) if entries else None
        q.add_row(f"rollout share of the step (gen / step; {base}: "
                  f"{'-' if base_share is None else f'{100 * base_share:.0f}%'})",
                  *("-" if x is None else f"{100 * x:.0f}%" for x in share))
        for k in IDENTITY_KEYS:
            vals = [[v for v in e["relative_difference"][k] if v is not None] for e in entries]
            q.add_row(f"{k}: largest relative difference", *(f"{max(v):.2g}" if v else "-" for v in vals))
        console.print(q)
    (out / "compare_table.txt").write_text(console.export_text())
    for path in plot(summary, out):
        console.print(f"plot: {path}")


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
    p.add_argument("--report-only", action="store_true",
                   help="no training: rebuild the table, parity summary and plots from the runs already in --out")
    p.add_argument("--wandb", action="store_true", help="also log to wandb, offline (WANDB_MODE=offline) under --out")
    p.add_argument("--tensorboard", action="store_true",
                   help="also log to tensorboard, under <out>/tensorboard/<config>_seed<S>")
    p.add_argument("--replay-seed", type=int, default=None,
                   help="replayable sampling in every run (same samples per iteration): paired ratios, identity")
    p.add_argument("--resume", action="store_true",
                   help="keep runs in --out that already logged --steps iterations; train only the missing ones")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error(f"--steps={args.steps}: must be >= 1")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        p.error(f"--seeds={args.seeds!r}: expected comma-separated integers")
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if not configs or len(set(configs)) != len(configs):
        p.error(f"--configs={args.configs!r}: expected distinct comma-separated config names, e.g. grpo_stock,grpo_seer")
    from seer_verl.paths import config_dir

    for c in configs:
        if not (config_dir() / f"{c}.yaml").is_file():
            p.error(f"--configs: {c!r} is not a config in {config_dir()}")
    if args.replay_seed is not None and args.replay_seed < 0:
        p.error(f"--replay-seed={args.replay_seed}: must be an integer >= 0")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        runs = load_runs(out, configs, seeds)
    else:
        loggers = tuple(name for name, on in (("wandb", args.wandb), ("tensorboard", args.tensorboard)) if on)
        runs = {}
        for seed in seeds:
            for c in configs:
                done = _logged(out, c, seed) if args.resume else []
                if len(done) >= args.steps:
                    print(f"{c} seed {seed}: kept {len(done)} logged iterations (--resume)", flush=True)
                    runs.setdefault(c, {})[seed] = done[:args.steps]
                    continue
                replay = [] if args.replay_seed is None else replay_overrides(c, args.replay_seed)
                runs.setdefault(c, {})[seed] = run_one(c, seed, args.steps, out, [*replay, *extra], loggers)
    summary = summarize(runs)
    summary["replay_seed"] = args.replay_seed
    (out / "compare.json").write_text(json.dumps(summary, indent=1, default=float))
    report(summary, out, [c for c in configs if c in runs], replayed=args.replay_seed is not None)
    return 0
