"""The LLM client verl's agent loops get under Seer: each sample's ``generate`` goes to the Seer service.

verl's ``SingleTurnAgentLoop`` calls ``server_manager.generate(request_id, prompt_ids=..., sampling_params=...,
priority=row)``; :class:`~seer_verl.integration.manager.SeerAgentLoopManager` sets ``priority`` to the row index
(stock verl does the same when the batch has none), so the service knows which sample of the batch this is.
"""

from __future__ import annotations

from typing import Any, Optional

from verl.workers.rollout.llm_server import LLMServerClient
from verl.workers.rollout.replica import TokenOutput


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
        out = await self._seer_service.generate.remote(int(priority), list(prompt_ids), dict(sampling_params))
        token_output = TokenOutput(**out)
        steps = token_output.extra_fields.get("global_steps")
        token_output.extra_fields.setdefault("min_global_steps", steps)
        token_output.extra_fields.setdefault("max_global_steps", steps)
        return token_output
