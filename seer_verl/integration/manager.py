"""``SeerAgentLoopManager``: Seer's rollout as a verl agent-loop manager (switch it on purely by config).

    actor_rollout_ref.rollout.agent.agent_loop_manager_class=seer_verl.integration.manager.SeerAgentLoopManager
    seer.policy=seer seer.chunk_size=256 ...          (configs/seer.yaml documents every knob)

It is verl's ``AgentLoopManager`` (same agent-loop workers, same tokenization, same post-processing, so the
DataProto that comes back has the same keys, dtypes, shapes, padding and row order as stock verl) with one
change: the workers' LLM client sends each sample to the :class:`~seer_verl.integration.service.SeerRolloutService`
actor, which generates it in chunks on verl's own vLLM servers under Seer's scheduler. ``seer/*`` timing and
scheduling metrics are added to ``meta_info["timing"]``, which verl's trainer logs as ``timing_s/seer/*``
(``seer/engine_failures``, ``seer/requests_redispatched`` and ``seer/engines_alive`` report engine loss).
The DataProto trainer (``trainer.use_v1=false``) uses it directly; under verl's default V1 trainer
(``trainer.use_v1=true``) the same switch builds :class:`~seer_verl.integration.manager_v1.SeerAgentLoopManagerTQ`. ``seer.replay_seed`` makes sampling replayable
(:mod:`seer_verl.replay`): the same tokens whatever the policy, chunking or speculation.

Checks made before the service starts (:func:`validate_rollout_config`): every ``seer.*`` key, and the Seer knobs
against verl's rollout settings (``rollout.n``, lengths, ``max_model_len``, ``max_num_seqs``) and the engines' KV
capacity. :func:`check_rows` rejects unusable dataset rows with the row named, before any sample runs. verl
itself starts the vLLM engines before it builds the agent-loop manager; to fail even earlier, call
``python -m seer_verl.integration.manager <verl overrides...>`` (or :func:`validate_rollout_config`) first.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import ray
from omegaconf import OmegaConf

from verl.experimental.agent_loop import AgentLoopManager
from verl.utils.ray_utils import auto_await

from seer_verl.core import SeerConfig
from seer_verl.integration.agent_worker import SeerAgentLoopWorker
from seer_verl.integration.client import SeerLLMServerClient
from seer_verl.integration.engines import kv_capacity, servers_of
from seer_verl.integration.service import EngineInfo, SeerRolloutService, engine_errored
from seer_verl.replay.keys import check_replay_seed
from seer_verl.spec.config import SpecConfig, check_engine_kwargs

logger = logging.getLogger(__name__)

_R = "actor_rollout_ref.rollout"
#: verl's built-in agent loops that read the row's ``raw_prompt`` chat messages
_RAW_PROMPT_AGENTS = ("single_turn_agent", "tool_agent")


def seer_config_of(config: Any) -> dict[str, Any]:
    """The ``seer`` node of verl's config as a plain dict, validated (errors name ``seer.<key>``)."""
    node = OmegaConf.select(config, "seer", default=None)
    values = {} if node is None else OmegaConf.to_container(node, resolve=True)
    if not isinstance(values, Mapping):
        raise ValueError(f"seer must be a mapping of seer.* keys; got {values!r}")
    values = dict(values)
    spec = values.pop("spec", None)  # grouped speculative decoding: its own node, validated by SpecConfig
    check_replay_seed(values.pop("replay_seed", None))  # read by the agent-loop workers (seer_verl.replay)
    SeerConfig.from_mapping(values)
    SpecConfig.from_mapping(spec)
    if spec is not None:
        values["spec"] = spec
    return values


def validate_rollout_config(config: Any, engines: list[tuple[int, int]] | None = None) -> list[str]:
    """Validate ``seer.*`` and check it against verl's rollout config (and the engines' ``(capacity_tokens,
    block_size)`` when given). Raises ValueError naming the key, the value and what is allowed; returns (and
    logs) warnings. Needs no engine: call it before starting any."""
    values = seer_config_of(config)
    spec = SpecConfig.from_mapping(values.pop("spec", None))
    seer = SeerConfig.from_mapping(values)
    r = OmegaConf.select(config, _R)
    if r is None:
        raise ValueError(f"{_R} is missing from the config")
    kwargs = OmegaConf.select(r, "engine_kwargs.vllm", default=None)
    check_engine_kwargs(spec, OmegaConf.to_container(kwargs, resolve=True) if kwargs is not None else None)

    def get(key: str) -> Any:
        v = OmegaConf.select(r, key, default=None)
        return None if v is None else v

    max_model_len = get("max_model_len")
    warnings = seer.check_rollout(
        n=get("n"), prompt_length=get("prompt_length"), response_length=get("response_length"),
        max_model_len=max_model_len, max_num_seqs=get("max_num_seqs"), engines=engines,
        keys={"n": f"{_R}.n", "prompt_length": f"{_R}.prompt_length", "response_length": f"{_R}.response_length",
              "max_model_len": f"{_R}.max_model_len", "max_num_seqs": f"{_R}.max_num_seqs",
              "kv": f"{_R}.engine_kwargs.vllm.kv_cache_memory_bytes (CPU) or {_R}.gpu_memory_utilization"},
    )
    for w in warnings:
        logger.warning("Seer config: %s", w)
    return warnings


def check_rows(non_tensor_batch: Mapping[str, Any], n: int, default_agent: str | None) -> None:
    """Raise ValueError naming the rows whose chat prompt verl's built-in agent loops cannot use: no
    ``raw_prompt``, not a list of messages, an empty conversation, a message without ``role``/``content``.
    (Stock verl fails the whole batch on such a row too, with the tokenizer's error and no row named.)"""
    agents = non_tensor_batch.get("agent_name")
    rows = [i for i in range(n) if (agents[i] if agents is not None else default_agent) in _RAW_PROMPT_AGENTS]
    if not rows:
        return
    raw = non_tensor_batch.get("raw_prompt")
    if raw is None:
        raise ValueError(f"the batch has no 'raw_prompt' field (chat messages), needed by rows {rows[:10]} "
                         f"({len(rows)} rows) for verl's agent loops")
    bad: list[str] = []
    for i in rows:
        msgs = raw[i]
        if msgs is None or isinstance(msgs, (str, bytes, Mapping)) or not hasattr(msgs, "__len__"):
            bad.append(f"row {i}: raw_prompt must be a list of chat messages, got {type(msgs).__name__}")
        elif len(msgs) == 0:
            bad.append(f"row {i}: raw_prompt is an empty conversation")
        else:
            for j, m in enumerate(msgs):
                if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
                    bad.append(f"row {i}: message {j} must be a mapping with 'role' and 'content', got {m!r:.80}")
                    break
    if bad:
        raise ValueError(f"{len(bad)} malformed dataset row(s): " + "; ".join(bad[:10])
                         + ("; ..." if len(bad) > 10 else ""))


def probe_engines(servers: dict[str, Any], addresses: list[str], timeout_s: float = 60.0
                  ) -> tuple[list[EngineInfo], dict[str, str]]:
    """``EngineInfo`` of every engine, and ``{address: reason}`` of those that do not answer (lost)."""
    engines: list[EngineInfo] = []
    dead: dict[str, str] = {}
    for a in addresses:
        try:
            if ray.get(servers[a].__ray_call__.remote(engine_errored), timeout=timeout_s):
                raise RuntimeError("vLLM reports its engine core dead")
            engines.append(EngineInfo(a, *kv_capacity(servers[a], timeout_s=timeout_s)))
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


def group_ids(non_tensor_batch: dict[str, Any], n: int) -> list[int]:
    """Group of each row: rows with the same ``uid`` (verl's per-prompt id) are siblings; without ``uid``, the
    dataset ``index``; without either, every row is its own group."""
    key = "uid" if "uid" in non_tensor_batch else "index" if "index" in non_tensor_batch else None
    if key is None:
        return list(range(n))
    seen: dict[Any, int] = {}
    return [seen.setdefault(v, len(seen)) for v in non_tensor_batch[key].tolist()]


def start_service(config: Any, llm_client: Any) -> tuple[Any, list[EngineInfo], SeerLLMServerClient]:
    """Validate the config, find verl's rollout engines behind ``llm_client`` and start the Seer service on them;
    return ``(service actor, engines, the LLM client the agent-loop workers get)``."""
    seer_cfg = seer_config_of(config)
    validate_rollout_config(config)
    rollout = config.actor_rollout_ref.rollout
    lb = llm_client._load_balancer
    servers = servers_of(lb)
    if not servers:
        raise RuntimeError("SeerAgentLoopManager: verl's load balancer has no rollout servers")
    addresses = sorted(servers)
    engines, dead = probe_engines(servers, addresses)
    validate_rollout_config(config, [(e.capacity_tokens, e.block_size) for e in engines if e.address not in dead])
    service = ray.remote(SeerRolloutService).options(max_concurrency=100_000, num_cpus=0).remote(
        {a: servers[a] for a in addresses},
        engines,
        seer_cfg,
        eos_token_ids(config.actor_rollout_ref.model.path),
        int(rollout.max_num_seqs) if rollout.get("max_num_seqs") else None,
        dead,
    )
    return service, engines, SeerLLMServerClient(config, load_balancer_handle=lb, seer_service=service)


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
    for k in ("dispatches", "chunks_completed", "probe_dispatches", "starvation_picks", "affinity_hits",
              "affinity_misses", "hol_skips", "finished_stop", "finished_length", "requests_redispatched",
              "engine_failures", "chunks_discarded", "max_passed_over", "continuations"):
        t[f"seer/{k}"] = float(m[k])
    for k in ("requests", "late_rows", "admission_s"):  # generate calls (turns), rows that joined late, wait
        if k in last:
            t[f"seer/{k}"] = float(last[k])
    if "engines_alive" in last:
        t["seer/engines_alive"] = float(last["engines_alive"])
    t.update({k: float(v) for k, v in (last.get("sd_metrics") or {}).items()})
    return t


def _use_v1(config: Any) -> bool:
    return bool(OmegaConf.select(config, "trainer.use_v1", default=False))


class SeerAgentLoopManager(AgentLoopManager):
    @classmethod
    def create(cls, *args: Any, **kwargs: Any) -> Any:
        """verl's constructor path. Under verl's V1 trainer (``trainer.use_v1=true``, TransferQueue) the same config
        switch gives :class:`~seer_verl.integration.manager_v1.SeerAgentLoopManagerTQ`."""
        config = kwargs.get("config", args[0] if args else None)
        if cls is SeerAgentLoopManager and config is not None and _use_v1(config):
            from seer_verl.integration.manager_v1 import SeerAgentLoopManagerTQ

            return SeerAgentLoopManagerTQ.create(*args, **kwargs)
        return super().create(*args, **kwargs)

    def __init__(self, config: Any, llm_client: Any, teacher_client: Any = None,
                 reward_loop_worker_handles: Any = None) -> None:
        self.seer_service, self.seer_engines, client = start_service(config, llm_client)
        self.seer_last: dict[str, Any] = {}
        # each sample's task tells the client its row (and, with seer.replay_seed, carries its replay key)
        self.agent_loop_workers_class = ray.remote(SeerAgentLoopWorker)
        super().__init__(config, client, teacher_client, reward_loop_worker_handles)

    def _max_model_len(self) -> int:
        return max_model_len_of(self.rollout_config)

    @auto_await
    async def generate_sequences(self, prompts: Any, true_lens: list[int] | None = None) -> Any:
        """Same contract as ``AgentLoopManager.generate_sequences``, called plainly (verl's DataProto trainer) or
        awaited (verl's one-step-off-policy trainer). ``true_lens`` feeds the ``oracle`` policy."""
        n = len(prompts)
        r = self.rollout_config
        check_rows(prompts.non_tensor_batch, n, OmegaConf.select(r, "agent.default_agent_loop", default=None))
        if true_lens is not None and len(true_lens) != n:
            raise ValueError(f"true_lens has {len(true_lens)} entries for a batch of {n} samples")
        user_priority = prompts.non_tensor_batch.get("priority")
        # the row index travels to the service as `priority` (stock verl uses arange(B) when the batch has none)
        prompts.non_tensor_batch["priority"] = np.arange(n, dtype=np.int64)
        await self.seer_service.begin_batch.remote(
            group_ids(prompts.non_tensor_batch, n), int(r.prompt_length), int(r.response_length),
            self._max_model_len(), true_lens,
        )
        try:
            out = await super().generate_sequences(prompts)
        except BaseException as exc:
            await self._end_failed_batch(exc, prompts, user_priority)
            raise
        self.seer_last = await self.seer_service.end_batch.remote()
        if user_priority is not None:
            out.non_tensor_batch["priority"] = user_priority
            prompts.non_tensor_batch["priority"] = user_priority
        out.meta_info.setdefault("timing", {}).update(seer_timing(self.seer_last))
        return out

    async def _end_failed_batch(self, exc: BaseException, prompts: Any, user_priority: Any) -> None:
        """The batch failed in verl's workers: close it in the service and raise the service's own error when it
        has one (it names the lost engines or the failing row), else let ``exc`` propagate."""
        if user_priority is not None:
            prompts.non_tensor_batch["priority"] = user_priority
        else:
            prompts.non_tensor_batch.pop("priority", None)
        try:
            self.seer_last = await self.seer_service.end_batch.remote()
        except ray.exceptions.RayTaskError as service_exc:
            raise service_exc.as_instanceof_cause() from exc


def main(argv: list[str] | None = None) -> int:
    """``python -m seer_verl.integration.manager [hydra overrides]``: validate a Seer training config (verl's
    ``ppo_trainer`` + the given overrides, composed like ``recipes/run_verl.sh``) without starting anything."""
    import sys

    from hydra import compose, initialize_config_dir

    from seer_verl.cli import config_dir

    args = list(sys.argv[1:] if argv is None else argv)
    name = "grpo_seer"
    if args and args[0].startswith("--config-name="):
        name = args.pop(0).split("=", 1)[1]
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        cfg = compose(name, overrides=args)
    try:
        warnings = validate_rollout_config(cfg)
    except ValueError as exc:
        print(f"invalid Seer config: {exc}")
        return 1
    print("Seer config OK" + "".join(f"\nwarning: {w}" for w in warnings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
