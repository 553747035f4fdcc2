"""A bench run's figures from its per-request records, in the keys the simulator uses too
(:mod:`seer_verl.run_metrics`): wall, tail (paper's definition), throughput, per-engine busy time."""

from __future__ import annotations

from typing import Any

from seer_verl.run_metrics import busy_seconds, tail_seconds


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
