"""Starting Seer on verl's rollout engines, shared by the DataProto (``manager``) and V1 (``manager_v1``) managers:
find the engines behind verl's LLM client, probe them, start the Seer service actor, and turn a finished batch's
summary into ``seer/*`` metrics."""

from __future__ import annotations

import logging
from dataclasses import fields
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from seer_verl.aio import bounded
from seer_verl.backends import VLLM, EngineBackend, backend_of
from seer_verl.core.length_correlation import group_length_correlation
from seer_verl.core.stats import RolloutStats
from seer_verl.integration.client import SeerLLMServerClient
from seer_verl.integration.engines import kv_capacity, servers_of
from seer_verl.integration.rollout_checks import seer_config_of, validate_rollout_config
from seer_verl.integration.service import EngineInfo, SeerRolloutService

__all__ = ["eos_token_ids", "init_agent_loop_workers", "max_model_len_of", "probe_engines", "seer_timing",
           "start_service"]

logger = logging.getLogger(__name__)


def probe_engines(servers: dict[str, Any], addresses: list[str], timeout_s: float = 60.0,
                  backend: EngineBackend = VLLM) -> tuple[list[EngineInfo], dict[str, str]]:
    """``EngineInfo`` of every engine, and ``{address: reason}`` of those that do not answer (lost)."""
    engines: list[EngineInfo] = []
    dead: dict[str, str] = {}
    for a in addresses:
        try:
            if ray.get(servers[a].__ray_call__.remote(backend.errored_in_server), timeout=timeout_s):
                raise RuntimeError(f"{backend.name} reports its engine core dead")
            engines.append(EngineInfo(a, *kv_capacity(servers[a], timeout_s=timeout_s, backend=backend)))
        except Exception as exc:  # noqa: BLE001 - a dead server actor, or an engine that does not answer
            dead[a] = f"unreachable when the rollout manager started ({type(exc).__name__}: {str(exc)[:120]})"
            engines.append(EngineInfo(a, 0, 16))
            logger.warning("Seer: rollout engine %s is lost (%s); it will not be used", a, exc)
    if len(dead) == len(addresses):
        raise RuntimeError(f"SeerAgentLoopManager: every rollout engine is unreachable: {dead}")
    return engines, dead


def eos_token_ids(model_path: str) -> list[int]:
    """Every token id that ends a sample for this model (generation_config + tokenizer)."""
    import json
    from pathlib import Path

    ids: set[int] = set()
    gc = Path(model_path) / "generation_config.json"
    if gc.is_file():
        e = json.loads(gc.read_text()).get("eos_token_id")
        ids.update([e] if isinstance(e, int) else list(e or []))
    cfg = Path(model_path) / "config.json"
    if cfg.is_file():
        e = json.loads(cfg.read_text()).get("eos_token_id")
        ids.update([e] if isinstance(e, int) else list(e or []))
    return sorted(ids)


def start_service(config: Any, llm_client: Any) -> tuple[Any, list[EngineInfo], SeerLLMServerClient]:
    """Validate the config, find verl's rollout engines behind ``llm_client`` and start the Seer service on them;
    return ``(service actor, engines, the LLM client the agent-loop workers get)``."""
    seer_cfg = seer_config_of(config)
    validate_rollout_config(config)
    rollout = config.actor_rollout_ref.rollout
    backend = backend_of(rollout.get("name"))
    lb = llm_client._load_balancer
    servers = servers_of(lb)
    if not servers:
        raise RuntimeError("SeerAgentLoopManager: verl's load balancer has no rollout servers")
    addresses = sorted(servers)
    engines, dead = probe_engines(servers, addresses, backend=backend)
    validate_rollout_config(config, [(e.capacity_tokens, e.block_size) for e in engines if e.address not in dead])
    # on the node of the process that builds the manager (verl's driver or TaskRunner): a node whose loss ends the
    # job anyway, never an engine's node, whose loss the service is there to survive (Ray's default placement can
    # put a 0-CPU actor on any node)
    here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
    service = ray.remote(SeerRolloutService).options(max_concurrency=100_000, num_cpus=0,
                                                     scheduling_strategy=here).remote(
        {a: servers[a] for a in addresses},
        engines,
        seer_cfg,
        eos_token_ids(config.actor_rollout_ref.model.path),
        int(rollout.max_num_seqs) if rollout.get("max_num_seqs") else None,
        dead,
        backend.name,
    )
    return service, engines, SeerLLMServerClient(config, load_balancer_handle=lb, seer_service=service)


def _node_id(server: Any) -> str:
    return ray.get_runtime_context().get_node_id()


async def init_agent_loop_workers(manager: Any) -> None:
    """verl's ``AgentLoopManager._init_agent_loop_workers`` (the same workers, names and round-robin over nodes with
    CPUs), except that nodes hosting a rollout engine are left out while other nodes with CPUs exist: an agent-loop
    worker dies with its node, and verl's batch with it, where Seer would finish the batch on the surviving engines.
    With an engine on every node (verl's hybrid mode), this is verl's own placement."""
    from uuid import uuid4

    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0]
    engine_nodes: set[str] = set()
    for server in servers_of(manager.llm_client._load_balancer).values():
        try:
            engine_nodes.add(await bounded(server.__ray_call__.remote(_node_id), 30.0, "engine node"))
        except Exception:  # noqa: BLE001 - a lost engine: probe_engines has reported it
            continue
    nodes = [n for n in nodes if n not in engine_nodes] or nodes
    manager.agent_loop_workers = [
        manager.agent_loop_workers_class.options(
            name=f"agent_loop_worker_{i}_{uuid4().hex[:8]}",
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=nodes[i % len(nodes)], soft=True),
        ).remote(manager.config, manager.llm_client, manager.teacher_client, manager.reward_loop_worker_handles)
        for i in range(manager.rollout_config.agent.num_workers)
    ]


def max_model_len_of(rollout: Any) -> int:
    return (int(rollout.max_model_len) if rollout.get("max_model_len")
            else int(rollout.prompt_length) + int(rollout.response_length))


def seer_timing(last: dict[str, Any]) -> dict[str, float]:
    """``seer/*`` metrics of one finished batch (verl logs them as ``timing_s/seer/*``)."""
    if not last:
        return {}
    m = last["metrics"]
    t = {
        "seer/rollout_s": float(last["wall_s"]),
        "seer/decision_s": float(last["decision_s"]),
        "seer/decision_ms_per_dispatch": 1e3 * last["decision_s"] / max(1, m["dispatches"]),
    }
    for f in fields(RolloutStats):  # every counter of the batch
        t[f"seer/{f.name}"] = float(m[f.name])
    # generate calls (turns), rows that joined late, the wait for the batch, engine calls, streamed calls cut
    for k in ("requests", "late_rows", "admission_s", "engine_calls", "stream_cuts"):
        if k in last:
            t[f"seer/{k}"] = float(last[k])
    if "engines_alive" in last:
        t["seer/engines_alive"] = float(last["engines_alive"])
    corr = group_length_correlation(last.get("group_lengths") or {}, permutations=0)
    if corr is not None:  # the signal the group length estimates learn from (0 = siblings' lengths say nothing)
        t["seer/group_length_icc"] = corr.icc
    t.update({k: float(v) for k, v in (last.get("sd_metrics") or {}).items()})
    return t
