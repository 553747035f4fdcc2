"""The agent-loop worker of replayable rollouts: every sample's sampling params carry its replay key.

The key is ``sample_key(seed, step, index, rollout_n)``: verl's own trajectory identity (trainer step, dataset
``index`` of the prompt, the sample's rank among that prompt's samples), so stock verl and Seer key the same sample
the same way, and iteration k of two training runs draws the same noise (see :mod:`seer_verl.replay.agent_loop`).
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf
from verl.experimental.agent_loop.agent_loop import AgentLoopWorker

from seer_verl.replay.keys import EXTRA_ARG, check_replay_seed, sample_key

__all__ = ["ReplayAgentLoopWorker", "replay_seed_of", "with_replay_key"]


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
