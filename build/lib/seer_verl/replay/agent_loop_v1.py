"""Replayable rollouts for stock verl on its V1 trainer (TransferQueue): the sample's replay key per session.

verl's V1 workers run a prompt's ``n`` sessions with one trajectory whose ``rollout_n`` is 0 for all of them; the
key uses the session id instead, as the legacy trainer's ``rollout_n`` (the sample's rank among its prompt's
samples) would be, so stock V1 and Seer V1 key every sample the same way.
``ReplayAgentLoopManager.create`` builds :class:`ReplayAgentLoopManagerTQ` when ``trainer.use_v1`` is true.
"""

from __future__ import annotations

from typing import Any

import ray
from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopManagerTQ, AgentLoopWorkerTQ

from seer_verl.replay.worker import ReplayAgentLoopWorker, replay_seed_of

__all__ = ["ReplayAgentLoopManagerTQ", "ReplayAgentLoopWorkerTQ"]

_TQWorker = AgentLoopWorkerTQ.__ray_metadata__.modified_class.__ray_actor_class__  # the class behind @ray.remote


class ReplayAgentLoopWorkerTQ(ReplayAgentLoopWorker, _TQWorker):
    async def _run_agent_loop(self, sampling_params: dict[str, Any], trajectory: dict[str, Any], **kwargs: Any
                              ) -> Any:
        trajectory = {**trajectory, "rollout_n": int(kwargs["session_id"])}  # V1 leaves it 0 for every session
        return await super()._run_agent_loop(sampling_params, trajectory, **kwargs)


class ReplayAgentLoopManagerTQ(AgentLoopManagerTQ):
    """Stock verl's V1 agent-loop manager with replayable sampling (``seer.replay_seed``); nothing else changes."""

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        if replay_seed_of(config) is None:
            raise ValueError("ReplayAgentLoopManagerTQ needs seer.replay_seed (an integer >= 0); got null")
        super().__init__(config, *args, **kwargs)
        self.agent_loop_workers_class = ray.remote(ReplayAgentLoopWorkerTQ)  # AgentLoopManagerTQ sets its own first
