"""`seer-verl simulate`: paper-scale rollout simulation of stock verl vs Seer's policies.

    seer-verl simulate workload=qwen2vl72b policies=[stock,divided,seer,seer_sd,oracle] out=runs/sim/qwen.json seed=0
    seer-verl simulate workload=cpu_bench            # + simulated vs measured wall time of the recorded bench run

Keys: ``workload`` (moonlight | qwen2vl72b | kimik2 | cpu_bench), ``policies`` (list), ``out`` (JSON path; the
table and plots are written next to it), ``seed``, ``plots`` (true/false), ``validate`` (cpu_bench: true by
default), ``timelines`` (keep per-engine timelines and per-request chunk intervals in the JSON; default true).
Any other key overrides the workload: ``num_groups``, ``group_size``, ``chunk_size``, ``gpu_util``, ``sigma_g``,
``sigma_r``, ``num_engines``, ``kv_capacity_tokens``, ``max_num_seqs``, ``stock_placement`` (group | request |
recorded), ``kv_pool``, ``acceptance``, ``gamma_max``, ``lam``, ``draft_reads_context``, ``step_model`` (a name in
seer_verl/sim/data or a JSON path);
cpu_bench also takes ``report`` (the bench JSON) and ``lengths_from`` (which run's lengths).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .policies import POLICIES

__all__ = ["main", "parse_args", "run", "validate_cpu"]

_DEFAULTS: dict[str, Any] = {
    "workload": "qwen2vl72b",
    "policies": list(POLICIES),
    "out": None,
    "seed": 0,
    "plots": True,
    "validate": None,
    "timelines": True,
}


def _value(v: str) -> Any:
    v = v.strip()
    if v.startswith("[") and v.endswith("]"):
        return [x.strip() for x in v[1:-1].split(",") if x.strip()]
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    if v.lower() in ("null", "none"):
        return None
    try:
        return int(v)
    except ValueError:
        pass
    try:
        return float(v)
    except ValueError:
        return v


def parse_args(argv: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Hydra-style ``key=value`` arguments -> (options, workload overrides)."""
    opts = dict(_DEFAULTS)
    over: dict[str, Any] = {}
    for a in argv:
        if a in ("-h", "--help"):
            raise SystemExit(print(__doc__) or 0)
        if "=" not in a:
            raise SystemExit(f"seer-verl simulate: expected key=value, got {a!r}")
        k, v = a.split("=", 1)
        k = k.lstrip("+")
        if k in opts:
            opts[k] = _value(v)
        else:
            over[k] = _value(v)
    pols = opts["policies"]
    if isinstance(pols, str):
        pols = [pols]
    bad = [p for p in pols if p not in POLICIES]
    if bad:
        raise SystemExit(f"seer-verl simulate: unknown policies {bad}; choose from {list(POLICIES)}")
    opts["policies"] = pols
    if not pols:
        raise ValueError("policies=[] is not allowed: a non-empty list from " + ", ".join(POLICIES))
    if not isinstance(opts["seed"], int) or isinstance(opts["seed"], bool):
        raise ValueError(f"seed={opts['seed']!r} is not allowed: an integer")
    if opts["out"] is None:
        opts["out"] = f"runs/sim/{opts['workload']}.json"
    return opts, over


def _progress_bar(desc: str, total: int):
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="req", leave=False, dynamic_ncols=True)
    state = {"n": 0}

    def cb(t: float, finished: int, n: int) -> None:
        if finished != state["n"]:
            bar.update(finished - state["n"])
            state["n"] = finished
            bar.set_postfix_str(f"sim t={t:,.0f}s", refresh=False)

    return bar, cb


def run(workload: str, policies: list[str], seed: int = 0, progress: bool = True, **over: Any) -> dict[str, Any]:
    """Simulate ``policies`` on a workload; the report dict (before ratios)."""
    from .runner import lower_bound, simulate
    from .workloads import make_workload

    w = make_workload(workload, seed=seed, **over)
    runs = []
    t0 = time.perf_counter()
    for p in policies:
        bar, cb = _progress_bar(p, w.num_requests) if progress else (None, None)
        try:
            runs.append(simulate(w, p, seed=seed, progress=cb))
        finally:
            if bar is not None:
                bar.close()
    return {
        "workload": w.summary(),
        "paper_ratios": w.paper_ratios,
        "lower_bound": lower_bound(w),
        "runs": runs,
        "sim_wall_s": time.perf_counter() - t0,
        "seed": seed,
    }


def validate_cpu(seed: int = 0, policies: tuple[str, ...] = ("stock", "seer"), **over: Any) -> dict[str, Any]:
    """Simulated vs measured wall time of the recorded CPU bench: each policy with its own run's lengths,
    the same engines, KV and (stock) the recorded engine of every row."""
    from .runner import simulate
    from .workloads import make_workload

    out: dict[str, Any] = {"policies": {}}
    for p in policies:
        try:
            w = make_workload("cpu_bench", seed=seed, lengths_from=p, **over)
        except ValueError:  # this policy was not part of the recorded bench
            continue
        m = w.measured[p]
        r = simulate(w, p, seed=seed, keep_requests=False)
        out["policies"][p] = {
            "measured_s": m["wall_s"], "simulated_s": r["wall_s"], "error": r["wall_s"] / m["wall_s"] - 1,
            "measured_preemptions": m["num_preemptions"], "simulated_preemptions": r["num_preemptions"],
            "measured_tail_s": m["tail_s"], "simulated_tail_s": r["tail_s"], "total_tokens": r["total_tokens"],
        }
        out["step_model"] = w.step_model.name
    errs = [abs(v["error"]) for v in out["policies"].values()]
    out["mean_abs_error"] = sum(errs) / len(errs)
    out["max_abs_error"] = max(errs)
    return out


def main(argv: list[str] | None = None) -> int:
    from .report import print_table, print_validation, write

    opts, over = parse_args(list(argv or []))
    report = run(opts["workload"], opts["policies"], int(opts["seed"]), **over)
    text = ""
    validate = opts["validate"]
    if validate is None:
        validate = opts["workload"] == "cpu_bench"
    if validate:
        cpu_over = {k: v for k, v in over.items() if k in ("report", "step_model")}
        try:
            report["validation"] = validate_cpu(int(opts["seed"]), ("stock", "divided", "seer"), **cpu_over)
        except (FileNotFoundError, ValueError, KeyError) as exc:
            report["validation"] = {"error": str(exc)}
    out = Path(opts["out"])
    out, plots = write(report, out, plots=bool(opts["plots"]), keep_timelines=bool(opts["timelines"]))
    text = print_table(report)
    if "validation" in report and "policies" in report["validation"]:
        text += print_validation(report["validation"])
    elif "validation" in report:
        print(f"validation skipped: {report['validation']['error']}")
    (out.parent / f"{out.stem}_table.txt").write_text(text)
    print(f"report: {out}" + (f"; plots: {', '.join(str(p) for p in plots)}" if plots else ""))
    return 0
