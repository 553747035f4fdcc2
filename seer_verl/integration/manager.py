"""``SeerAgentLoopManager``: Seer's rollout as a verl agent-loop manager (switch it on purely by config).

    actor_rollout_ref.rollout.agent.agent_loop_manager_class=seer_verl.integration.manager.SeerAgentLoopManager
    seer.policy=seer seer.chunk_size=256 ...          (configs/seer.yaml documents every knob)

It is verl's ``AgentLoopManager`` (same agent-loop workers, same tokenization, same post-processing, so the
DataProto that comes back has the same keys, dtypes, shapes, padding and row order as stock verl) with one
change: the workers' LLM client sends each sample to the :class:`~seer_verl.integration.service.SeerRolloutService`
actor, which generates it in chunks on verl's own vLLM servers under Seer's scheduler. ``seer/*`` timing and
scheduling metrics are added to ``meta_info["timing"]``, which verl's trainer logs as ``timing_s/seer/*``.
Targets the DataProto trainer (``trainer.use_v1=false``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import ray
from omegaconf import OmegaConf

from verl.experimental.agent_loop import AgentLoopManager

from seer_verl.core import SeerConfig
from seer_verl.integration.client import SeerLLMServerClient
from seer_verl.integration.engines import kv_capacity, servers_of
from seer_verl.integration.service import EngineInfo, SeerRolloutService


def seer_config_of(config: Any) -> dict[str, Any]:
    """The ``seer`` node of verl's config as a plain dict, validated (errors name ``seer.<key>``)."""
    node = OmegaConf.select(config, "seer", default=None)
    values = {} if node is None else OmegaConf.to_container(node, resolve=True)
    SeerConfig.from_mapping(values)
    return values


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


def group_ids(non_tensor_batch: dict[str, Any], n: int) -> list[int]:
    """Group of each row: rows with the same ``uid`` (verl's per-prompt id) are siblings; without ``uid``, the
    dataset ``index``; without either, every row is its own group."""
    key = "uid" if "uid" in non_tensor_batch else "index" if "index" in non_tensor_batch else None
    if key is None:
        return list(range(n))
    seen: dict[Any, int] = {}
    return [seen.setdefault(v, len(seen)) for v in non_tensor_batch[key].tolist()]


class SeerAgentLoopManager(AgentLoopManager):
    def __init__(self, config: Any, llm_client: Any, teacher_client: Any = None,
                 reward_loop_worker_handles: Any = None) -> None:
        seer_cfg = seer_config_of(config)
        rollout = config.actor_rollout_ref.rollout
        lb = llm_client._load_balancer
        servers = servers_of(lb)
        if not servers:
            raise RuntimeError("SeerAgentLoopManager: verl's load balancer has no rollout servers")
        addresses = sorted(servers)
        engines = [EngineInfo(a, *kv_capacity(servers[a])) for a in addresses]
        self.seer_service = ray.remote(SeerRolloutService).options(
            max_concurrency=100_000, num_cpus=0
        ).remote(
            {a: servers[a] for a in addresses},
            engines,
            seer_cfg,
            eos_token_ids(config.actor_rollout_ref.model.path),
            int(rollout.max_num_seqs) if rollout.get("max_num_seqs") else None,
        )
        self.seer_engines = engines
        self.seer_last: dict[str, Any] = {}
        client = SeerLLMServerClient(config, load_balancer_handle=lb, seer_service=self.seer_service)
        super().__init__(config, client, teacher_client, reward_loop_worker_handles)

    def _max_model_len(self) -> int:
        r = self.rollout_config
        return int(r.max_model_len) if r.get("max_model_len") else int(r.prompt_length) + int(r.response_length)

    def generate_sequences(self, prompts: Any, true_lens: list[int] | None = None) -> Any:
        """Same contract as ``AgentLoopManager.generate_sequences``. ``true_lens`` feeds the ``oracle`` policy."""
        n = len(prompts)
        user_priority = prompts.non_tensor_batch.get("priority")
        # the row index travels to the service as `priority` (stock verl uses arange(B) when the batch has none)
        prompts.non_tensor_batch["priority"] = np.arange(n, dtype=np.int64)
        r = self.rollout_config
        ray.get(self.seer_service.begin_batch.remote(
            group_ids(prompts.non_tensor_batch, n), int(r.prompt_length), int(r.response_length),
            self._max_model_len(), true_lens,
        ))
        try:
            out = super().generate_sequences(prompts)
        finally:
            self.seer_last = ray.get(self.seer_service.end_batch.remote())
        if user_priority is not None:
            out.non_tensor_batch["priority"] = user_priority
            prompts.non_tensor_batch["priority"] = user_priority
        out.meta_info.setdefault("timing", {}).update(self._seer_timing(self.seer_last))
        return out

    @staticmethod
    def _seer_timing(last: dict[str, Any]) -> dict[str, float]:
        if not last:
            return {}
        m = last["metrics"]
        t = {
            "seer/rollout_s": float(last["wall_s"]),
            "seer/decision_s": float(last["decision_s"]),
            "seer/decision_ms_per_dispatch": 1e3 * last["decision_s"] / max(1, m["dispatches"]),
        }
        for k in ("dispatches", "chunks_completed", "probe_dispatches", "starvation_picks", "affinity_hits",
                  "affinity_misses", "hol_skips", "finished_stop", "finished_length", "requests_redispatched",
                  "engine_failures", "max_passed_over"):
            t[f"seer/{k}"] = float(m[k])
        return t
