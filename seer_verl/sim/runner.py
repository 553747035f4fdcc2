"""Run one policy on one workload: build engines and driver, run the event loop, summarise."""

from __future__ import annotations

import time
import zlib
from typing import Any

import numpy as np

from seer_verl.run_metrics import tail_seconds

from .engine import SimEngine
from .events import EventLoop
from .policies import POLICIES, SeerDriver, StockDriver, make_spec
from .workloads import Workload

__all__ = ["lower_bound", "simulate"]


#: random stream of each policy (engine-side draws: speculative acceptance), keyed by the policy's name so that
#: adding a policy changes no other policy's stream; these five keep the ids their published figures used
_STREAM_IDS = {"stock": 0, "divided": 1, "seer": 2, "seer_sd": 3, "oracle": 4}


def _stream_id(policy: str) -> int:
    return _STREAM_IDS.get(policy, zlib.crc32(policy.encode()))


def simulate(w: Workload, policy: str, seed: int = 0, progress=None, keep_requests: bool = True) -> dict[str, Any]:
    """Simulate ``policy`` on ``w``; return the run's figures (times in simulated seconds).

    ``progress(sim_time_s, requests_finished, num_requests)`` is called after every event that completed work.
    """
    if policy not in POLICIES:
        raise ValueError(f"policy {policy!r}: choose from {', '.join(POLICIES)}")
    t0 = time.perf_counter()
    ss = np.random.SeedSequence([seed, _stream_id(policy)])
    rngs = [np.random.default_rng(s) for s in ss.spawn(w.num_engines)]
    if policy == "stock":
        # its own stream, so the engines' draws are the same as before the placement drew from it
        driver: StockDriver | SeerDriver = StockDriver(w, np.random.default_rng([seed, _stream_id("placement")]))
        spec = None
    else:
        driver = SeerDriver(w, "seer" if policy == "seer_sd" else policy)
        spec = make_spec(w, driver) if policy == "seer_sd" else None
    engines = [SimEngine(i, w.kv_capacity_tokens, w.block_size, w.max_num_seqs, w.max_batched_tokens, w.step_model,
                         rngs[i], spec, w.timeline_dt, priority=w.engine_priority and policy != "stock",
                         submit_cost_s=w.submit_cost_s)
               for i in range(w.num_engines)]
    cb = None
    if progress is not None:
        n = w.num_requests

        def cb(t: float, _chunks: int) -> None:
            progress(t, n - driver._unfinished, n)

    loop = EventLoop(engines, cb)
    end = loop.run(driver)
    wall = time.perf_counter() - t0
    finish = driver.finish_s
    lens = [w.out_len(i) for i in range(w.num_requests)]
    if driver.generated != lens:
        bad = [i for i in range(len(lens)) if driver.generated[i] != lens[i]][:5]
        raise AssertionError(f"{policy}: generated tokens differ from the true lengths for requests {bad}")
    total = sum(lens)
    busy = [e.stats.busy_s for e in engines]
    prompt_total = sum(w.prompt_lens)
    prefill = sum(e.stats.prefill_tokens for e in engines)
    out: dict[str, Any] = {
        "policy": policy,
        "wall_s": end,
        "tail_s": tail_seconds(finish),
        "throughput_tok_s": total / end if end > 0 else 0.0,
        "total_tokens": total,
        "num_requests": w.num_requests,
        "num_preemptions": sum(e.stats.preemptions for e in engines),
        "preempted_requests": driver.preempted_requests,
        "utilisation": float(np.mean([b / end for b in busy])) if end > 0 else 0.0,
        "engine_busy_s": busy,
        "engine_tokens": [e.stats.tokens for e in engines],
        "prefill_tokens": prefill,
        "recompute_tokens": max(0, prefill - prompt_total - sum(max(c - 1, 0) for c in driver.chunks)),
        "cache_hit_tokens": sum(e.stats.cache_hit_tokens for e in engines),
        "steps": sum(e.stats.steps for e in engines),
        "events": loop.events,
        "sim_wall_s": wall,
        "engine_timelines": [
            {"t": [x[0] for x in e.stats.timeline], "running": [x[1] for x in e.stats.timeline],
             "waiting": [x[2] for x in e.stats.timeline], "kv_usage": [x[3] for x in e.stats.timeline]}
            for e in engines
        ],
    }
    if spec is not None:
        out["spec_steps"] = sum(e.stats.spec_steps for e in engines)
        out["mean_tokens_per_step"] = total / max(1, sum(e.stats.steps for e in engines))
    if isinstance(driver, SeerDriver):
        m = driver.ctrl.metrics
        out["controller"] = {k: v for k, v in m.items() if not isinstance(v, dict)}
    if keep_requests:
        out["requests"] = [
            {"row": i, "group": w.group_ids[i], "length": lens[i], "start_s": driver.start_s[i],
             "finish_s": finish[i], "chunks": driver.chunks[i], "engines": sorted(driver.engines_of[i]),
             "intervals": driver.intervals[i]}
            for i in range(w.num_requests)
        ]
    return out


def lower_bound(w: Workload) -> dict[str, float]:
    """``max(total work / aggregate throughput, longest request's serial time)`` in simulated seconds.

    Aggregate throughput: every engine at its best steady decode rate over batch sizes ``1..B_kv``, where
    ``B_kv = min(max_num_seqs, KV capacity / (mean prompt + mean length / 2))`` is how many average requests at
    their time-averaged context fit (the bench's definition), each step at that batch's KV; with speculative
    decoding allowed at the best acceptance (all siblings as references) and the best draft length, so the
    bound also holds for ``seer_sd``. Serial time: the longest request alone on an engine, decoding at the best
    of ``T(1, gamma) / tau(gamma)`` per token (prefill ignored). Like the bench's bound it ignores prefill and
    assumes a time-average context, so it is optimistic, not a proof.
    """
    m = w.step_model
    lens = [w.out_len(i) for i in range(w.num_requests)]
    total = sum(lens)
    mean_len = total / len(lens)
    prompt = sum(w.prompt_lens) / len(w.prompt_lens)
    avg_ctx = prompt + mean_len / 2
    b_kv = max(1, min(w.max_num_seqs, int(w.kv_capacity_tokens // avg_ctx)))
    refs = w.group_size() - 1
    acc = w.acceptance

    def rate(b: int, ctx: float) -> float:
        best = 0.0
        for g in range(w.gamma_max + 1):
            t = m.step_time(b, b * (g + 1), b * ctx) + w.draft_s_per_token * b * g
            best = max(best, b * acc.tau(refs, g) / t)
        return best

    def rate_nosd(b: int, ctx: float) -> float:
        return b / m.step_time(b, b, b * ctx)

    per_engine = max(rate(b, avg_ctx) for b in range(1, b_kv + 1))
    per_engine_nosd = max(rate_nosd(b, avg_ctx) for b in range(1, b_kv + 1))
    longest = max(range(len(lens)), key=lambda i: lens[i])
    L, P = lens[longest], w.prompt_lens[longest]
    serial = L / rate(1, P + L / 2)
    serial_nosd = m.decode_time(1, 1, P, 1.0, L)
    work = total / (w.num_engines * per_engine)
    work_nosd = total / (w.num_engines * per_engine_nosd)
    return {
        "lower_bound_s": max(work, serial),
        "lower_bound_nosd_s": max(work_nosd, serial_nosd),
        "work_bound_s": work, "serial_bound_s": serial,
        "work_bound_nosd_s": work_nosd, "serial_bound_nosd_s": serial_nosd,
        "aggregate_tok_s": w.num_engines * per_engine, "aggregate_nosd_tok_s": w.num_engines * per_engine_nosd,
        "batch_kv": b_kv,
    }
