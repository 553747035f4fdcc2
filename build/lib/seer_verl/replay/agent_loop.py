"""Replayable rollouts on verl's side: agent-loop workers that give every sample its replay key.

With ``seer.replay_seed`` set, each sample's sampling params carry ``extra_args["seer_replay"] =
sample_key(seed, step, index, rollout_n)``: verl's own trajectory identity (trainer step, dataset ``index`` of the
prompt, the sample's rank among that prompt's samples), so stock verl and Seer key the same sample the same way,
and iteration k of two training runs draws the same noise. vLLM's side (:mod:`seer_verl.replay.vllm_sampler`) does
the rest. Multi-turn agents call the engine several times per sample; the key is per sample and the position
absolute, so every turn continues the same stream.

* Seer: :class:`~seer_verl.integration.manager.SeerAgentLoopManager`'s workers are :class:`ReplayAgentLoopWorker` (keyed whenever
  ``seer.replay_seed`` is set).
* Stock verl: ``++actor_rollout_ref.rollout.agent.agent_loop_manager_class=seer_verl.replay.agent_loop.ReplayAgentLoopManager``
  plus ``+seer.replay_seed=N`` (verl's ``AgentLoopManager``, unchanged but for the key).
"""

from __future__ import annotations

from typing import Any

import ray
from omegaconf import OmegaConf
from verl.experimental.agent_loop import AgentLoopManager

from seer_verl.replay.worker import ReplayAgentLoopWorker, replay_seed_of, with_replay_key

__all__ = ["ReplayAgentLoopManager", "ReplayAgentLoopWorker", "replay_seed_of", "with_replay_key"]


def use_replay_workers(manager: AgentLoopManager, config: Any) -> None:
    """Make ``manager`` (before ``AgentLoopManager.__init__``) start replay workers when ``seer.replay_seed`` is set."""
    if replay_seed_of(config) is not None:
        manager.agent_loop_workers_class = ray.remote(ReplayAgentLoopWorker)


class ReplayAgentLoopManager(AgentLoopManager):
    """Stock verl's agent-loop manager with replayable sampling (``seer.replay_seed``); nothing else changes.
    Under verl's V1 trainer (``trainer.use_v1=true``) ``create`` builds
    :class:`~seer_verl.replay.agent_loop_v1.ReplayAgentLoopManagerTQ` instead."""

    @classmethod
    def create(cls, *args: Any, **kwargs: Any) -> Any:
        config = kwargs.get("config", args[0] if args else None)
        if cls is ReplayAgentLoopManager and OmegaConf.select(config, "trainer.use_v1", default=False):
            from seer_verl.replay.agent_loop_v1 import ReplayAgentLoopManagerTQ

            return ReplayAgentLoopManagerTQ.create(*args, **kwargs)
        return super().create(*args, **kwargs)

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        if replay_seed_of(config) is None:
            raise ValueError("ReplayAgentLoopManager needs seer.replay_seed (an integer >= 0); got null")
        use_replay_workers(self, config)
        super().__init__(config, *args, **kwargs)
