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

from typing import Any

import numpy as np
import ray
from omegaconf import OmegaConf

from verl.experimental.agent_loop import AgentLoopManager
from verl.utils.ray_utils import auto_await

from seer_verl.integration.agent_worker import SeerAgentLoopWorker
from seer_verl.integration.launch import init_agent_loop_workers, max_model_len_of, seer_timing, start_service
from seer_verl.integration.rollout_checks import check_rows, seer_config_of, validate_rollout_config

__all__ = ["SeerAgentLoopManager", "check_rows", "group_ids", "seer_config_of", "validate_rollout_config"]


def group_ids(non_tensor_batch: dict[str, Any], n: int) -> list[int]:
    """Group of each row: rows with the same ``uid`` (verl's per-prompt id) are siblings; without ``uid``, the
    dataset ``index``; without either, every row is its own group."""
    key = "uid" if "uid" in non_tensor_batch else "index" if "index" in non_tensor_batch else None
    if key is None:
        return list(range(n))
    seen: dict[Any, int] = {}
    return [seen.setdefault(v, len(seen)) for v in non_tensor_batch[key].tolist()]


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

    async def _init_agent_loop_workers(self) -> None:
        await init_agent_loop_workers(self)  # verl's, off the engines' nodes (seer_verl/integration/launch.py)

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
    """``seer-verl check-config [--config-name=NAME] [hydra overrides]``: validate a Seer training config (verl's
    ``ppo_trainer`` + the given overrides, composed like ``recipes/run_verl.sh``) without starting anything."""
    import sys

    from hydra import compose, initialize_config_dir

    from seer_verl.paths import config_dir

    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print("usage: seer-verl check-config [NAME | --config-name=NAME] [hydra overrides]\n"
              f"  validate a Seer training config, start nothing; NAME: a config of {config_dir()} (default grpo_seer)")
        return 0
    name = "grpo_seer"
    if args and args[0].startswith("--config-name="):
        name = args.pop(0).split("=", 1)[1]
    elif args and args[0] == "--config-name" and len(args) > 1:
        name = args[1]
        del args[:2]
    elif args and "=" not in args[0] and not args[0].startswith(("+", "~", "-")):
        name = args.pop(0)  # `check-config grpo_longtail_seer`: a bare first word is the config's name
    known = sorted(p.stem for p in config_dir().glob("*.yaml"))
    if name not in known:
        raise ValueError(f"--config-name={name!r} is not a config here: one of {known}")
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
