"""Seer on verl's default trainer: V1 (``trainer.use_v1=true``), TransferQueue, ``trainer.v1.trainer_mode=sync``.

The same config switch as for the DataProto trainer (``agent_loop_manager_class=...SeerAgentLoopManager``, composed
by ``configs/seer.yaml``) builds :class:`SeerAgentLoopManagerTQ` here (``SeerAgentLoopManager.create`` reads
``trainer.use_v1``). How V1 drives a manager, and what changes for Seer:

* verl calls ``generate_sequences(batch: TensorDict)`` with one row per *prompt* (not repeated by ``n``) and returns
  at once: verl's TQ workers start the prompt's ``n`` sessions in the background and put each finished sample in
  TransferQueue; the trainer's replay buffer then waits for the groups (``timing_s/gen``). Seer keeps that: the
  manager opens a Seer batch with one row per sample (prompt ``p``'s session ``i`` is row ``offset[p] + i``, its group
  the prompt) and returns; the workers' ``generate`` calls go to the Seer service as in the legacy trainer. Prompts
  submitted while a batch runs (verl refills failed groups) join it as late rows.
* The batch ends when the trainer has sampled it: :class:`SeerReplayBuffer` (``trainer.v1.sampler.custom_sampler``,
  set by ``configs/seer.yaml``) ends it after verl's own sampling and returns the ``seer/*`` metrics as
  ``timing_s/seer/*``, the names the legacy trainer logs. Without it, the next ``generate_sequences`` ends the
  previous batch once no call waits (nothing is lost; only the metrics are not logged). verl passes a custom sampler
  no DAPO settings: group filtering (``algorithm.filter_groups``) is refused here rather than silently ignored.
* verl's V1 trajectories carry ``rollout_n = 0`` for every session; Seer's workers use the session id, so that with
  ``seer.replay_seed`` each sample of a group gets its own replay key (as in the legacy trainer).
* Only the ``sync`` trainer mode: the async modes abort and resume requests through their own client.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import ray
from omegaconf import OmegaConf
from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopManagerTQ
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer
from verl.utils import tensordict_utils as tu

from seer_verl.integration.agent_worker import SeerAgentLoopWorker
from seer_verl.integration.launch import init_agent_loop_workers, max_model_len_of, seer_timing, start_service
from seer_verl.integration.rollout_checks import check_rows
from seer_verl.replay.agent_loop_v1 import ReplayAgentLoopWorkerTQ

__all__ = ["SeerAgentLoopManagerTQ", "SeerAgentLoopWorkerTQ", "SeerReplayBuffer"]

#: the TensorDict key carrying each prompt's first row in the Seer batch (popped before the agent loop sees it)
ROW_KEY = "__seer_row__"

class SeerAgentLoopWorkerTQ(SeerAgentLoopWorker, ReplayAgentLoopWorkerTQ):
    """verl's TransferQueue agent-loop worker; each session knows its Seer row and (from
    :class:`~seer_verl.replay.agent_loop_v1.ReplayAgentLoopWorkerTQ`) its replay rank."""

    def _seer_row(self, kwargs: dict[str, Any]) -> int:
        if ROW_KEY not in kwargs:
            raise RuntimeError(f"SeerAgentLoopWorkerTQ: the batch has no {ROW_KEY!r}; run it under "
                               "SeerAgentLoopManagerTQ")
        return int(kwargs.pop(ROW_KEY)) + int(kwargs["session_id"])


class SeerAgentLoopManagerTQ(AgentLoopManagerTQ):
    #: the manager of this process (the trainer's), for :class:`SeerReplayBuffer`
    current: SeerAgentLoopManagerTQ | None = None

    def __init__(self, config: Any, llm_client: Any, teacher_client: Any = None,
                 reward_loop_worker_handles: Any = None) -> None:
        mode = OmegaConf.select(config, "trainer.v1.trainer_mode", default="sync")
        if mode != "sync":
            raise ValueError(f"trainer.v1.trainer_mode={mode!r}: Seer runs under verl's V1 trainer in mode 'sync' "
                             "only (the async modes abort and resume requests through their own LLM client)")
        if OmegaConf.select(config, "algorithm.filter_groups.enable", default=False):
            raise ValueError("algorithm.filter_groups.enable=true: verl's V1 trainer gives a custom sampler (Seer's "
                             "SeerReplayBuffer) no DAPO settings, so group filtering would be silently off; "
                             "use the DataProto trainer (trainer.use_v1=false) for DAPO with Seer")
        self.seer_service, self.seer_engines, client = start_service(config, llm_client)
        self.seer_last: dict[str, Any] = {}
        self._open_rows = 0  # rows of the open Seer batch (0: none open)
        self._open_validate = False
        super().__init__(config, client, teacher_client, reward_loop_worker_handles)
        self.agent_loop_workers_class = ray.remote(SeerAgentLoopWorkerTQ)  # AgentLoopManagerTQ sets its own first
        SeerAgentLoopManagerTQ.current = self

    async def _init_agent_loop_workers(self) -> None:
        await init_agent_loop_workers(self)  # verl's, off the engines' nodes (seer_verl/integration/launch.py)

    def generate_sequences(self, prompts: Any) -> None:
        """verl's V1 contract: start every sample of ``prompts`` (one row per prompt) and return; results go to
        TransferQueue through verl's workers."""
        r = self.rollout_config
        validate = bool(tu.get(prompts, "validate", False))
        n_prompts = len(prompts)
        ns = tu.get(prompts, "__rollout_n__", None)
        ns = [int(x) for x in ns] if ns is not None else [int(r.val_kwargs.n if validate else r.n)] * n_prompts
        agents = tu.get(prompts, "agent_name", None)
        check_rows({"raw_prompt": tu.get(prompts, "raw_prompt", None),
                    "agent_name": agents if isinstance(agents, list) else None},
                   n_prompts, agents if isinstance(agents, str) else OmegaConf.select(r, "agent.default_agent_loop"))
        if self._open_rows and (validate != self._open_validate or ray.get(self.seer_service.idle.remote())):
            self.finish_batch()  # the previous batch is over (nobody sampled it through SeerReplayBuffer)
        offsets = np.cumsum([0] + ns[:-1]).astype(np.int64) + self._open_rows
        groups = [int(offsets[p]) for p in range(n_prompts) for _ in range(ns[p])]
        if self._open_rows:  # prompts submitted while the batch runs (verl's refills) join it
            first = ray.get(self.seer_service.extend_batch.remote(groups))
            assert first == self._open_rows, (first, self._open_rows)
        else:
            ray.get(self.seer_service.begin_batch.remote(groups, int(r.prompt_length), int(r.response_length),
                                                         max_model_len_of(r)))
            self._open_validate = validate
        self._open_rows += len(groups)
        tu.assign_non_tensor_stack(prompts, ROW_KEY, offsets.tolist())
        super().generate_sequences(prompts)

    def finish_batch(self) -> dict[str, float]:
        """End the open Seer batch (every sample has been answered); return its ``seer/*`` metrics."""
        if not self._open_rows:
            return {}
        self._open_rows = 0
        self.seer_last = ray.get(self.seer_service.end_batch.remote())
        return seer_timing(self.seer_last)


class SeerReplayBuffer(ReplayBuffer):
    """verl's V1 replay buffer (sync sampling, unchanged); after each sample it ends the Seer batch and adds its
    ``seer/*`` metrics as ``timing_s/seer/*``. Set by ``configs/seer.yaml``:
    ``trainer.v1.sampler.custom_sampler.{path: pkg://seer_verl.integration.manager_v1, name: SeerReplayBuffer}``."""

    def sample(self, global_steps: int, partition_id: str, batch_size: int) -> tuple[Any, dict]:
        batch, metrics = super().sample(global_steps, partition_id, batch_size)
        manager = SeerAgentLoopManagerTQ.current
        if manager is not None:
            seer = manager.finish_batch()
            if partition_id == "train":
                metrics = {**metrics, **{f"timing_s/{k}": v for k, v in seer.items()}}
        return batch, metrics
