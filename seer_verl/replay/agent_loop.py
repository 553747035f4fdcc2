"""Replayable rollouts on verl's side: agent-loop workers that give every sample its replay key.

With ``seer.replay_seed`` set, each sample's sampling params carry ``extra_args["seer_replay"] =
sample_key(seed, step, index, rollout_n)``: verl's own trajectory identity (trainer step, dataset ``index`` of the
prompt, the sample's rank among that prompt's samples), so stock verl and Seer key the same sample the same way,
and iteration k of two training runs draws the same noise. vLLM's side (:mod:`seer_verl.replay.vllm_sampler`) does
the rest. Multi-turn agents call the engine several times per sample; the key is per sample and the position
absolute, so every turn continues the same stream.

* Seer: :class:`~seer_verl.integration.manager.SeerAgentLoopManager` uses :class:`ReplayAgentLoopWorker` whenever
  ``seer.replay_seed`` is set.
* Stock verl: ``++actor_rollout_ref.rollout.agent.agent_loop_manager_class=seer_verl.replay.agent_loop.ReplayAgentLoopManager``
  plus ``+seer.replay_seed=N`` (verl's ``AgentLoopManager``, unchanged but for the key).
"""

from __future__ import annotations

from typing import Any

import ray
from omegaconf import OmegaConf
from verl.experimental.agent_loop import AgentLoopManager
from verl.experimental.agent_loop.agent_loop import AgentLoopWorker

from seer_verl.replay.keys import EXTRA_ARG, check_replay_seed, sample_key

__all__ = ["ReplayAgentLoopManager", "ReplayAgentLoopWorker", "replay_seed_of", "with_replay_key"]


def replay_seed_of(config: Any) -> int | None:
    """``seer.replay_seed`` of verl's config (None: free sampling), validated."""
    return check_replay_seed(OmegaConf.select(config, "seer.replay_seed", default=None))


def with_replay_key(sampling_params: dict[str, Any], seed: int, trajectory: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``sampling_params`` whose ``extra_args`` carry the sample's replay key."""
    key = sample_key(seed, trajectory.get("step", -1), trajectory["sample_index"], trajectory["rollout_n"])
    return {**sampling_params, "extra_args": {**dict(sampling_params.get("extra_args") or {}), EXTRA_ARG: key}}


class ReplayAgentLoopWorker(AgentLoopWorker):
    """verl's agent-loop worker; each sample's sampling params get its replay key (when ``seer.replay_seed``)."""

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self._replay_seed = replay_seed_of(config)

    async def _run_agent_loop(self, sampling_params: dict[str, Any], trajectory: dict[str, Any], **kwargs: Any
                              ) -> Any:
        if self._replay_seed is not None and not trajectory.get("validate", False):
            sampling_params = with_replay_key(sampling_params, self._replay_seed, trajectory)
        return await super()._run_agent_loop(sampling_params, trajectory, **kwargs)


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
