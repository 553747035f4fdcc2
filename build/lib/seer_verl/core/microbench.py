"""Micro-benchmark of one dispatch decision of the controller (``seer`` policy).

Seer's global scheduler is called once per chunk, so its per-decision cost bounds how many chunks a
rollout can dispatch per second. This benchmark keeps ``n`` requests of one rollout in the system
(about half in flight, half waiting) and times, for many steps, one decision cycle::

    controller.complete(oldest in-flight chunk)   # release KV, append, update estimate, re-queue
    controller.next_dispatches()                  # pick + place the next chunk(s)

Chunk results are synthetic (a fixed true length per request, EOS when it is reached), so requests
finish, group estimates move and the seer queues are re-keyed as in a real rollout. When fewer than
``n / 2`` requests remain unfinished, a fresh rollout of ``n`` requests replaces it (untimed).

Two load regimes: ``"inflight"`` (engines capped by ``max_inflight_per_engine``, KV ample) and
``"kv"`` (KV headroom binding, so decisions also skip requests that fit nowhere).

Run ``python -m seer_verl.core.microbench`` to print a table.
"""

from __future__ import annotations

import random
import time
from collections import deque

from .buffer import RequestBuffer
from .config import SeerConfig
from .controller import Dispatch, RolloutController
from .placement import EngineState

__all__ = ["run_dispatch_microbench"]


def _build(
    n: int, num_engines: int, group_size: int, chunk_size: int, max_chunks: int, mode: str, rng: random.Random
) -> RolloutController:
    prompt_len = 512
    max_tokens = chunk_size * max_chunks
    rows = [(i // group_size, prompt_len) for i in range(n)]
    # A few long groups, many short ones: each group gets a scale, members vary around it.
    true_lens = []
    for _group in range((n + group_size - 1) // group_size):
        scale = rng.choice((0.1, 0.2, 0.3, 0.5, 1.0))
        for _ in range(group_size):
            true_lens.append(max(1, min(max_tokens, int(rng.uniform(0.5, 1.0) * scale * max_tokens))))
    buffer = RequestBuffer.from_rows(rows, max_tokens, true_lens[:n])
    half = max(1, n // 2)
    if mode == "inflight":
        cap = max(1, half // num_engines)
        engines = [EngineState(e, capacity_tokens=1 << 40, block_size=16) for e in range(num_engines)]
        config = SeerConfig(policy="seer", chunk_size=chunk_size, max_inflight_per_engine=cap)
    elif mode == "kv":
        per_req = prompt_len + max_tokens // 4 + chunk_size
        capacity = max(prompt_len + max_tokens + 16, (half // num_engines) * per_req)
        engines = [EngineState(e, capacity_tokens=capacity, block_size=16) for e in range(num_engines)]
        config = SeerConfig(policy="seer", chunk_size=chunk_size)
    else:
        raise ValueError(f"mode must be 'inflight' or 'kv', got {mode!r}")
    return RolloutController(buffer, engines, config)


def run_dispatch_microbench(
    sizes: tuple[int, ...] = (100, 1000, 10000),
    decisions: int = 2000,
    num_engines: int = 8,
    group_size: int = 8,
    chunk_size: int = 256,
    max_chunks: int = 32,
    mode: str = "inflight",
    seed: int = 0,
) -> list[dict[str, float | int | str]]:
    """Time ``decisions`` complete+dispatch cycles with ``n`` requests in the system, per size.

    Returns one dict per size: ``n_requests``, ``mode``, ``decisions`` (timed cycles),
    ``mean_us``, ``p50_us``, ``p99_us``, ``max_us`` (wall-clock microseconds per cycle),
    ``cpu_mean_us``, ``cpu_p99_us`` (the same cycles in thread CPU time, which excludes time the
    process spent descheduled on a busy machine), ``dispatches_per_cycle`` (mean chunks dispatched
    per next_dispatches call) and ``rebuilds``.
    """
    out: list[dict[str, float | int | str]] = []
    tokens = list(range(chunk_size))
    logps = [-0.5] * chunk_size
    for n in sizes:
        rng = random.Random(seed + n)
        ctrl = _build(n, num_engines, group_size, chunk_size, max_chunks, mode, rng)
        queue: deque[Dispatch] = deque(ctrl.next_dispatches())
        samples: list[int] = []
        cpu_samples: list[int] = []
        dispatched = 0
        rebuilds = 0
        perf = time.perf_counter_ns
        cpu = time.thread_time_ns
        while len(samples) < decisions:
            if ctrl.num_unfinished < n // 2 or not queue:
                ctrl = _build(n, num_engines, group_size, chunk_size, max_chunks, mode, rng)
                queue = deque(ctrl.next_dispatches())
                rebuilds += 1
                continue
            d = queue.popleft()
            req = ctrl.request(d.req_id)
            assert req.true_len is not None
            k = min(d.max_tokens, req.true_len - req.generated)
            stopped = req.generated + k == req.true_len
            toks, lps = tokens[:k], logps[:k]
            c0 = cpu()
            t0 = perf()
            ctrl.complete(d, toks, lps, stopped)
            new = ctrl.next_dispatches()
            t1 = perf()
            c1 = cpu()
            samples.append(t1 - t0)
            cpu_samples.append(c1 - c0)
            dispatched += len(new)
            queue.extend(new)
        samples.sort()
        cpu_samples.sort()
        p99 = min(len(samples) - 1, (len(samples) * 99) // 100)
        out.append(
            {
                "n_requests": n,
                "mode": mode,
                "decisions": len(samples),
                "mean_us": sum(samples) / len(samples) / 1e3,
                "p50_us": samples[len(samples) // 2] / 1e3,
                "p99_us": samples[p99] / 1e3,
                "max_us": samples[-1] / 1e3,
                "cpu_mean_us": sum(cpu_samples) / len(cpu_samples) / 1e3,
                "cpu_p99_us": cpu_samples[p99] / 1e3,
                "dispatches_per_cycle": dispatched / len(samples),
                "rebuilds": rebuilds,
            }
        )
    return out


def _main() -> None:
    for mode in ("inflight", "kv"):
        for row in run_dispatch_microbench(mode=mode):
            print(
                f"mode={row['mode']:<8} n={row['n_requests']:>6}  mean={row['mean_us']:8.1f} us  "
                f"p50={row['p50_us']:8.1f} us  p99={row['p99_us']:8.1f} us  max={row['max_us']:8.1f} us  "
                f"cpu mean={row['cpu_mean_us']:6.1f} us  cpu p99={row['cpu_p99_us']:6.1f} us  "
                f"dispatches/cycle={row['dispatches_per_cycle']:.2f}  rebuilds={row['rebuilds']}"
            )


if __name__ == "__main__":
    _main()
