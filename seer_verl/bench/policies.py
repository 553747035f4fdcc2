"""Rollout policies the bench can run, each as the agent-loop manager verl would use.

``stock`` is verl's own ``AgentLoopManager`` with its load balancer (sticky + least in-flight), unmodified.
``divided`` / ``seer`` / ``oracle`` are :class:`~seer_verl.integration.manager.SeerAgentLoopManager` with
``seer.policy`` set accordingly (divided rollout with FCFS, + context-aware scheduling, longest-first on lengths
recorded by an earlier policy of the same bench run). With ``workload.replay_seed`` every policy samples the same
tokens (:mod:`seer_verl.replay`), so ``oracle`` knows this workload's exact lengths.

Speculative rows need engines started differently, so each policy names an *engine profile*:

* ``plain``: the engines as verl starts them (stock; calibration);
* ``priority``: the same with vLLM's ``scheduling_policy=priority``, as ``configs/seer.yaml`` starts them for Seer
  (divided, seer, oracle): each chunk carries its request's start rank, so an engine serves a continuing request
  before newer ones and, short of KV, preempts the request that started last;
* ``seer_sd``: Seer's worker extension + vLLM's ``suffix`` method (``configs/seer_sd.yaml``), priority scheduling:
  ``seer_sd`` (Seer +
  adaptive grouped SD), ``seer_fixed_sd`` (every request drafts ``gamma_max`` tokens every step) and
  ``seer_sd_off`` (Seer with speculation off on these engines: what the SD machinery costs when nothing is
  drafted; compare with ``seer`` on plain engines);
* ``suffix``: vLLM's built-in suffix decoding passed through ``engine_kwargs`` to stock verl (``stock_suffix``):
  what a user would try first instead of Seer. Same ``num_speculative_tokens`` as Seer's ``gamma_max``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

import ray

from seer_verl.core.policies import POLICIES as CORE_POLICIES


def _stock(verl_cfg: Any, servers: Any, seer_cfg: dict[str, Any] | None = None, true_lens: Any = None) -> Any:
    """verl's ``AgentLoopManager``; with a replay seed, the same plus each sample's replay key."""
    from verl.experimental.agent_loop import AgentLoopManager

    seed = (seer_cfg or {}).get("replay_seed")
    if seed is None:
        return AgentLoopManager.create(config=verl_cfg, llm_client=servers.get_client())
    from omegaconf import OmegaConf

    from seer_verl.replay.agent_loop import ReplayAgentLoopManager

    cfg = copy.deepcopy(verl_cfg)
    OmegaConf.set_struct(cfg, False)
    cfg.seer = {"replay_seed": seed}
    return ReplayAgentLoopManager.create(config=cfg, llm_client=servers.get_client())


def _stock_records(manager: Any, out: Any, load_balancer: Any, address_to_engine: dict[str, int], t0: float):
    """Per-row (engine, start, end) from the recording load balancer; stock runs each request in one piece."""
    events = ray.get(load_balancer.pop_events.remote())
    by_row: dict[int, list[tuple[int, float, float]]] = {}
    for ev in events:
        by_row.setdefault(ev["row"], []).append((address_to_engine[ev["server"]], ev["start"] - t0, ev["end"] - t0))
    return by_row


def _seer_factory(policy: str, spec: dict[str, Any] | None = None,
                  seer_over: dict[str, Any] | None = None) -> Callable[..., Any]:
    def make(verl_cfg: Any, servers: Any, seer_cfg: dict[str, Any], true_lens: list[int] | None = None) -> Any:
        from omegaconf import OmegaConf

        from seer_verl.integration.manager import SeerAgentLoopManager

        cfg = copy.deepcopy(verl_cfg)
        OmegaConf.set_struct(cfg, False)
        seer = {k: v for k, v in seer_cfg.items() if k != "spec"}
        if spec is not None:
            seer["spec"] = {**dict(seer_cfg.get("spec") or {}), **spec}
        cfg.seer = {**seer, **(seer_over or {}), "policy": policy}
        manager = SeerAgentLoopManager.create(config=cfg, llm_client=servers.get_client())
        manager.bench_true_lens = true_lens
        return manager

    return make


def _seer_records(manager: Any, out: Any, load_balancer: Any, address_to_engine: dict[str, int], t0: float):
    """Per-row chunk records kept by the Seer service (engine indices follow the service's engine order)."""
    remap = [address_to_engine[e.address] for e in manager.seer_engines]
    return {row: [(remap[e], s - t0, t - t0) for e, s, t in iv] for row, iv in manager.seer_last["records"].items()}


@dataclass(frozen=True)
class BenchArm:
    """One row of the bench: how to build its agent-loop manager, how to read its per-row chunk records, which
    engine profile it runs on, and whether it needs the lengths an earlier run recorded (``oracle``)."""

    make: Callable[..., Any]
    records: Callable[..., dict[int, list[tuple[int, float, float]]]]
    profile: str
    needs_true_lengths: bool = False


#: every policy the bench can run: stock verl, one arm per scheduling policy registered in the core (on priority
#: engines; a new core policy appears here by itself), and the speculative rows
POLICIES: dict[str, BenchArm] = {
    "stock": BenchArm(_stock, _stock_records, "plain"),
    **{name: BenchArm(_seer_factory(name), _seer_records, "priority", cls.needs_true_lengths)
       for name, cls in CORE_POLICIES.items()},
    "seer_sd": BenchArm(_seer_factory("seer", {"enabled": True, "mode": "adaptive"}), _seer_records, "seer_sd"),
    "seer_fixed_sd": BenchArm(_seer_factory("seer", {"enabled": True, "mode": "fixed"}), _seer_records, "seer_sd"),
    "seer_sd_off": BenchArm(_seer_factory("seer", {"enabled": False}), _seer_records, "seer_sd"),
    "stock_suffix": BenchArm(_stock, _stock_records, "suffix"),
    # the reserve rule before e5c56fc (only requests that have not started switch it on), for a paired A/B
    "seer_auto_new": BenchArm(_seer_factory("seer", seer_over={"kv_reserve": "auto_new"}), _seer_records, "priority"),
    # the precedence before 2026-12-07 (the request that started first goes first on a full engine), for a paired A/B
    "seer_start": BenchArm(_seer_factory("seer", seer_over={"precedence": "start"}), _seer_records, "priority"),
    # the placement before 2026-12-07's tail balance and cache-aware affinity, for a paired A/B
    "seer_no_tail": BenchArm(_seer_factory("seer", seer_over={"tail_balance": None, "cache_affinity": False}),
                             _seer_records, "priority"),
    # 256-token chunks: half the chunk boundaries of the automatic 128 on vLLM-cpu's engines, for a paired A/B
    "seer_chunk256": BenchArm(_seer_factory("seer", seer_over={"chunk_size": 256}), _seer_records, "priority"),
    # each sample's chunks on one engine as one engine call while it continues there (seer.stream_chunks)
    "seer_stream": BenchArm(_seer_factory("seer", seer_over={"stream_chunks": True}), _seer_records, "priority"),
}

#: engine profiles in the order the bench starts them (calibration always runs on ``plain`` engines)
PROFILES = ("plain", "priority", "seer_sd", "suffix")


def engine_overrides(profile: str, gamma_max: int) -> list[str]:
    """Hydra overrides of verl's rollout config that start the engines of ``profile``."""
    from seer_verl.speculative.config import WORKER_EXTENSION

    kw = "actor_rollout_ref.rollout.engine_kwargs.vllm"
    spec = f"{{method:suffix,num_speculative_tokens:{gamma_max},suffix_decoding_max_tree_depth:64}}"
    priority = "actor_rollout_ref.rollout.scheduling_policy=priority"
    if profile == "plain":
        return []
    if profile == "priority":
        return [priority]
    if profile == "seer_sd":
        return [f"+{kw}.worker_extension_cls={WORKER_EXTENSION}", f"+{kw}.speculative_config={spec}", priority]
    if profile == "suffix":  # vLLM's suffix decoding; the extension only lets the bench empty its cache between runs
        from seer_verl.bench.suffix_cache import EXTENSION

        return [f"+{kw}.worker_extension_cls={EXTENSION}", f"+{kw}.speculative_config={spec}"]
    raise ValueError(f"engine profile {profile!r}: expected one of {PROFILES}")

