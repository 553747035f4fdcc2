"""Per-run rollout figures, shared by the bench (measured) and the simulator (simulated): one set of keys.

Every run record of ``seer-verl bench`` and ``seer-verl simulate`` carries:

==========================  ==========================================================================
``policy``                  the policy's name (``stock``, ``seer``, ...)
``wall_s``                  seconds from the batch's start to its last sample (simulated: model seconds)
``tail_s``                  seconds spent solely on the last 10% of requests to finish (:func:`tail_seconds`)
``throughput_tok_s``        generated tokens / ``wall_s``
``total_tokens``            generated tokens
``num_requests``            requests (samples) of the batch
``num_preemptions``         engine preemptions (vLLM's counter, or the simulated engines')
``engine_busy_s``           per engine, seconds with at least one request on it
``lower_bound_s``           the run's lower bound on ``wall_s`` (where one is known)
``wall_over_lower_bound``   ``wall_s / lower_bound_s``
``vs_stock``                :func:`ratios` against the ``stock`` run of the same repeat (:func:`add_vs_stock`)
==========================  ==========================================================================

Stdlib only: the tools layer (bench, simulator) imports it; it imports nothing of the package.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

__all__ = ["RATIOS", "add_vs_stock", "busy_seconds", "ratios", "set_lower_bound", "tail_seconds"]

#: ratio name -> (run key, orientation): ``"speedup"`` = base / run (> 1: the run is faster), ``"ratio"`` = run / base
RATIOS: dict[str, tuple[str, str]] = {
    "wall_speedup": ("wall_s", "speedup"),
    "throughput_ratio": ("throughput_tok_s", "ratio"),
    "tail_ratio": ("tail_s", "ratio"),
}


def tail_seconds(finish_s: list[float], frac: float = 0.10) -> float:
    """Time spent solely on the last ``frac`` of requests to finish (Seer §2: tail = last 10% of requests).

    With finish times sorted, that is ``last finish - finish of the request that completes the first 90%``.
    """
    if not finish_s:
        return 0.0
    f = sorted(finish_s)
    k = max(1, math.ceil((1.0 - frac) * len(f)))
    return f[-1] - f[k - 1]


def busy_seconds(intervals: Iterable[tuple[float, float]]) -> float:
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


def ratios(run: dict[str, Any], base: dict[str, Any]) -> dict[str, float | None]:
    """Every :data:`RATIOS` entry of ``run`` against ``base`` (``None`` where the denominator is 0)."""
    out: dict[str, float | None] = {}
    for name, (key, kind) in RATIOS.items():
        num, den = (base[key], run[key]) if kind == "speedup" else (run[key], base[key])
        out[name] = num / den if den else None
    return out


def add_vs_stock(runs: list[dict[str, Any]], base: str = "stock") -> None:
    """Set ``vs_stock`` on every run that has a ``base`` run of the same ``repeat`` (0 when a run has none)."""
    by_repeat = {r.get("repeat", 0): r for r in runs if r["policy"] == base}
    for r in runs:
        b = by_repeat.get(r.get("repeat", 0))
        if b is not None:
            r["vs_stock"] = ratios(r, b)


def set_lower_bound(run: dict[str, Any], lower_bound_s: float | None) -> None:
    """Record ``lower_bound_s`` and ``wall_over_lower_bound`` on ``run`` (nothing if the bound is unknown)."""
    if lower_bound_s:
        run["lower_bound_s"] = lower_bound_s
        run["wall_over_lower_bound"] = run["wall_s"] / lower_bound_s
