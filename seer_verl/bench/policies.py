"""Rollout policies the bench can run, each as the agent-loop manager verl would use.

``stock`` is verl's own ``AgentLoopManager`` with its load balancer (sticky + least in-flight), unmodified.
``divided`` / ``seer`` / ``oracle`` are :class:`~seer_verl.integration.manager.SeerAgentLoopManager` with
``seer.policy`` set accordingly (divided rollout with FCFS, + context-aware scheduling, longest-first on lengths
recorded by an earlier policy of the same bench run).
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import ray


def _stock(verl_cfg: Any, servers: Any, seer_cfg: dict[str, Any] | None = None, true_lens: Any = None) -> Any:
    from verl.experimental.agent_loop import AgentLoopManager

    return AgentLoopManager.create(config=verl_cfg, llm_client=servers.get_client())


def _stock_records(manager: Any, out: Any, load_balancer: Any, address_to_engine: dict[str, int], t0: float):
    """Per-row (engine, start, end) from the recording load balancer; stock runs each request in one piece."""
    events = ray.get(load_balancer.pop_events.remote())
    by_row: dict[int, list[tuple[int, float, float]]] = {}
    for ev in events:
        by_row.setdefault(ev["row"], []).append((address_to_engine[ev["server"]], ev["start"] - t0, ev["end"] - t0))
    return by_row


def _seer_factory(policy: str) -> Callable[..., Any]:
    def make(verl_cfg: Any, servers: Any, seer_cfg: dict[str, Any], true_lens: list[int] | None = None) -> Any:
        from omegaconf import OmegaConf

        from seer_verl.integration.manager import SeerAgentLoopManager

        cfg = copy.deepcopy(verl_cfg)
        OmegaConf.set_struct(cfg, False)
        cfg.seer = {**seer_cfg, "policy": policy}
        manager = SeerAgentLoopManager.create(config=cfg, llm_client=servers.get_client())
        manager.bench_true_lens = true_lens
        return manager

    return make


def _seer_records(manager: Any, out: Any, load_balancer: Any, address_to_engine: dict[str, int], t0: float):
    """Per-row chunk records kept by the Seer service (engine indices follow the service's engine order)."""
    remap = [address_to_engine[e.address] for e in manager.seer_engines]
    return {row: [(remap[e], s - t0, t - t0) for e, s, t in iv] for row, iv in manager.seer_last["records"].items()}


#: name -> (make manager, per-row chunk records)
POLICIES: dict[str, tuple[Callable[..., Any], Callable[..., dict[int, list[tuple[int, float, float]]]]]] = {
    "stock": (_stock, _stock_records),
    "divided": (_seer_factory("divided"), _seer_records),
    "seer": (_seer_factory("seer"), _seer_records),
    "oracle": (_seer_factory("oracle"), _seer_records),
}

#: policies that need per-row lengths recorded by an earlier policy of the same bench run
NEEDS_TRUE_LENGTHS = ("oracle",)
