"""Engine speed calibration for the benchmark's lower bound.

``lower_bound_s = max(total tokens / aggregate throughput, longest request / batch-1 speed)``: no policy can
beat the engines' best aggregate rate, and no non-speculative policy can finish the longest request faster than
one engine decodes it alone. Both rates are measured on the benchmark's own engines right before the runs,
with ``ignore_eos`` so every request produces exactly the tokens asked for:

* batch-1 speed: one request per engine, all engines at once (each engine sees the same memory-bandwidth
  competition it sees during the rollout);
* aggregate throughput: ``batch`` requests per engine, all engines at once, ``batch`` = as many average-length
  requests as the KV budget holds (capped by ``max_num_seqs``).

The bound ignores prefill and the growth of attention cost with context, so it is optimistic (a true lower bound
up to those effects).

:func:`probe_speed` is the same aggregate burst, shorter, run before and after every timed run: this host's speed
drifts (by up to 20% within one bench), and a run's wall time is only comparable with a run at another time
together with the host speed it ran at.
"""

from __future__ import annotations

import time
from typing import Any


def _burst(handles: list[Any], per_engine: int, prompt_len: int, tokens: int, salt: int = 0) -> float:
    """Tokens per second of ``per_engine`` concurrent requests on every engine (all engines at once). ``salt``
    changes the prompts (a new salt: nothing in the prefix cache)."""
    import ray

    refs = []
    for e, h in enumerate(handles):
        for i in range(per_engine):
            prompt = [(7919 * (e * per_engine + i) + 13 * j + 104729 * salt) % 20000 + 100 for j in range(prompt_len)]
            refs.append(h.generate.remote(
                prompt_ids=prompt,
                sampling_params={"max_tokens": tokens, "temperature": 1.0, "ignore_eos": True},
                request_id=f"calib-{per_engine}-{e}-{i}-{time.time_ns()}",
            ))
    t0 = time.time()
    outs = ray.get(refs, timeout=1800)
    dt = time.time() - t0
    return sum(len(o.token_ids) for o in outs) / dt


def calibrate(handles: list[Any], prompt_len: int, batch: int, tokens: int = 96) -> dict[str, float]:
    b1_total = _burst(handles, 1, prompt_len, tokens)
    agg = _burst(handles, batch, prompt_len, tokens)
    return {
        "batch1_tok_s_per_engine": b1_total / len(handles),
        "aggregate_tok_s": agg,
        "calibration_batch_per_engine": batch,
        "calibration_tokens": tokens,
    }


def probe_speed(handles: list[Any], per_engine: int, prompt_len: int, tokens: int, salt: int) -> float:
    """The host's speed now: aggregate tokens per second of ``per_engine`` requests of ``tokens`` tokens on every
    engine at once, from prompts no earlier probe or run left in the prefix cache (``salt``: a new one per probe)."""
    return _burst(handles, per_engine, prompt_len, tokens, salt=1 + salt)


def lower_bound_s(total_tokens: int, longest: int, cal: dict[str, float]) -> float:
    return max(total_tokens / cal["aggregate_tok_s"], longest / cal["batch1_tok_s_per_engine"])
