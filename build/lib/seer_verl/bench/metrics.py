"""Per-run figures from per-request records: wall, tail (paper's definition), throughput, per-engine busy time."""

from __future__ import annotations

import math
from typing import Any


def tail_seconds(finish_s: list[float], frac: float = 0.10) -> float:
    """Time spent solely on the last ``frac`` of requests to finish (Seer §2: tail = last 10% of requests).

    With finish times sorted, that is ``last finish - finish of the request that completes the first 90%``.
    """
    if not finish_s:
        return 0.0
    f = sorted(finish_s)
    k = max(1, math.ceil((1.0 - frac) * len(f)))
    return f[-1] - f[k - 1]


def busy_seconds(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end) intervals (an engine is busy while any request runs on it)."""
    total, cur_s, cur_e = 0.0, None, None
    for s, e in sorted(intervals):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_s
    return total


def summarize(policy: str, wall_s: float, requests: list[dict[str, Any]], num_engines: int) -> dict[str, Any]:
    """``requests``: one dict per row with ``row``, ``length`` (tokens), ``finish_s`` (since start), ``intervals``
    (list of ``(engine, start_s, end_s)`` chunks; one for stock)."""
    finish = [r["finish_s"] for r in requests]
    total = int(sum(r["length"] for r in requests))
    per_engine: list[list[tuple[float, float]]] = [[] for _ in range(num_engines)]
    for r in requests:
        for eng, s, e in r["intervals"]:
            per_engine[eng].append((s, e))
    busy = [busy_seconds(iv) for iv in per_engine]
    last = max(finish) if finish else 0.0
    return {
        "policy": policy,
        "wall_s": wall_s,
        "gen_end_s": last,
        "tail_s": tail_seconds(finish),
        "throughput_tok_s": total / wall_s if wall_s > 0 else 0.0,
        "num_requests": len(requests),
        "total_tokens": total,
        "max_length": max((r["length"] for r in requests), default=0),
        "engine_busy_s": busy,
        "engine_idle_frac": [1.0 - b / last if last > 0 else 0.0 for b in busy],
    }
