"""Rollout policies the bench can run, each as the agent-loop manager verl would use.

``stock`` is verl's own ``AgentLoopManager`` with its load balancer (sticky + least in-flight), unmodified.
"""

from __future__ import annotations

from typing import Any, Callable

import ray


def _stock(verl_cfg: Any, servers: Any) -> Any:
    from verl.experimental.agent_loop import AgentLoopManager

    return AgentLoopManager.create(config=verl_cfg, llm_client=servers.get_client())


def _stock_records(manager: Any, out: Any, load_balancer: Any, address_to_engine: dict[str, int], t0: float):
    """Per-row (engine, start, end) from the recording load balancer; stock runs each request in one piece."""
    events = ray.get(load_balancer.pop_events.remote())
    by_row: dict[int, list[tuple[int, float, float]]] = {}
    for ev in events:
        by_row.setdefault(ev["row"], []).append((address_to_engine[ev["server"]], ev["start"] - t0, ev["end"] - t0))
    return by_row


#: name -> (make manager, per-row chunk records)
POLICIES: dict[str, tuple[Callable[..., Any], Callable[..., dict[int, list[tuple[int, float, float]]]]]] = {
    "stock": (_stock, _stock_records),
}
