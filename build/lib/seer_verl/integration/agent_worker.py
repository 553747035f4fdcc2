"""``SeerAgentLoopWorker``: verl's agent-loop worker, telling Seer's LLM client which sample is calling.

Each sample of a batch runs in its own asyncio task of an agent-loop worker (verl's ``_run_agent_loop``). Agent
loops call ``server_manager.generate(...)`` once per turn, and not all of them pass the sample's ``priority``
(verl's ``ToolAgentLoop`` does not). The worker sets :data:`~seer_verl.integration.client.CURRENT_ROW` to the
sample's row for the duration of its task, so the client knows the row whatever the agent loop passes. With
``seer.replay_seed`` the sample's replay key is added as well (:class:`~seer_verl.replay.agent_loop.ReplayAgentLoopWorker`).
"""

from __future__ import annotations

from typing import Any

from seer_verl.integration.client import CURRENT_ROW
from seer_verl.replay.worker import ReplayAgentLoopWorker

__all__ = ["SeerAgentLoopWorker"]


class SeerAgentLoopWorker(ReplayAgentLoopWorker):
    def _seer_row(self, kwargs: dict[str, Any]) -> int:
        """The sample's row in the Seer batch: SeerAgentLoopManager puts the row index in ``priority``."""
        if "priority" not in kwargs:
            raise RuntimeError("SeerAgentLoopWorker: the batch has no 'priority' (row index) for this sample; "
                               "run it under SeerAgentLoopManager")
        return int(kwargs["priority"])

    async def _run_agent_loop(self, sampling_params: dict[str, Any], trajectory: dict[str, Any], **kwargs: Any
                              ) -> Any:
        token = CURRENT_ROW.set(self._seer_row(kwargs))
        try:
            return await super()._run_agent_loop(sampling_params, trajectory, **kwargs)
        finally:
            CURRENT_ROW.reset(token)
