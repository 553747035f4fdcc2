"""The LLM client verl's agent loops get under Seer: each ``generate`` call goes to the Seer service.

The service must know which sample of the batch calls (a multi-turn agent calls once per turn). Seer's
agent-loop worker (:class:`~seer_verl.integration.agent_worker.SeerAgentLoopWorker`) sets :data:`CURRENT_ROW` for
each sample's task; without it, the ``priority`` argument is taken as the row (verl's ``SingleTurnAgentLoop`` passes
it, and :class:`~seer_verl.integration.manager.SeerAgentLoopManager` sets it to the row index; verl's
``ToolAgentLoop`` does not pass it).
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Optional

from verl.workers.rollout.llm_server import LLMServerClient
from verl.workers.rollout.replica import TokenOutput


#: the batch row of the sample whose agent loop runs in the current asyncio task (None outside one)
CURRENT_ROW: ContextVar[int | None] = ContextVar("seer_current_row", default=None)


class SeerLLMServerClient(LLMServerClient):
    def __init__(self, config: Any, load_balancer_handle: Any = None, seer_service: Any = None, **kwargs: Any):
        super().__init__(config=config, load_balancer_handle=load_balancer_handle, **kwargs)
        if seer_service is None:
            raise ValueError("SeerLLMServerClient needs the Seer rollout service handle")
        self._seer_service = seer_service

    async def generate(
        self,
        request_id: str,
        *,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        image_data: Optional[list[Any]] = None,
        video_data: Optional[list[Any]] = None,
        audio_data: Optional[list[Any]] = None,
        mm_processor_kwargs: Optional[dict[str, Any]] = None,
        priority: int = 0,
        **kwargs: Any,
    ) -> TokenOutput:
        if image_data or video_data or audio_data:
            raise NotImplementedError("Seer rollout handles text prompts only (multimodal inputs were given)")
        row = CURRENT_ROW.get()
        out = await self._seer_service.generate.remote(int(priority) if row is None else row, list(prompt_ids),
                                                       dict(sampling_params))
        token_output = TokenOutput(**out)
        steps = token_output.extra_fields.get("global_steps")
        token_output.extra_fields.setdefault("min_global_steps", steps)
        token_output.extra_fields.setdefault("max_global_steps", steps)
        return token_output
