"""vLLM worker extension that installs Seer's grouped drafter, without forking vLLM or verl.

Set on the rollout engines by config (``configs/seer_sd.yaml``)::

    actor_rollout_ref.rollout.engine_kwargs.vllm:
      worker_extension_cls: seer_verl.speculative.worker_ext.SeerWorkerExtension
      speculative_config: {method: suffix, num_speculative_tokens: 8, ...}

vLLM imports the module named by ``worker_extension_cls`` in every worker process *before* it builds the model
runner, so rebinding ``gpu_model_runner.SuffixDecodingProposer`` here makes the runner construct
:class:`~seer_verl.speculative.proposer.GroupSuffixProposer` for ``method="suffix"``; vLLM's ``isinstance`` checks still
hold (it is a subclass). The extension class subclasses verl's own worker extension, so verl's weight sync keeps
working, and adds the ``seer_sd_*`` methods that the Seer service reaches through ``collective_rpc``.
"""

from __future__ import annotations

from typing import Any

import vllm.v1.worker.gpu_model_runner as _gmr
from verl.workers.rollout.vllm_rollout.utils import vLLMColocateWorkerExtension

from seer_verl.speculative.proposer import GroupSuffixProposer

_gmr.SuffixDecodingProposer = GroupSuffixProposer

__all__ = ["SeerWorkerExtension"]


class SeerWorkerExtension(vLLMColocateWorkerExtension):
    """verl's worker extension plus RPC entry points of the grouped drafter."""

    def _seer_drafter(self) -> GroupSuffixProposer:
        d = getattr(self.model_runner, "drafter", None)
        if not isinstance(d, GroupSuffixProposer):
            raise RuntimeError("Seer grouped SD: the engine's drafter is not GroupSuffixProposer; start the engine "
                               "with speculative_config.method=suffix and this worker extension")
        return d

    def seer_sd_configure(self, settings: dict[str, Any]) -> bool:
        self._seer_drafter().configure(settings)
        return True

    def seer_sd_reset(self) -> bool:
        self._seer_drafter().reset()
        return True

    def seer_sd_suspend(self, on: bool) -> bool:
        self._seer_drafter().suspend(on)
        return True

    def seer_sd_apply(self, increments: list[tuple[str, int, int, list[int]]]) -> int:
        return self._seer_drafter().apply_increments(increments)

    def seer_sd_release(self, gids: list[str]) -> bool:
        self._seer_drafter().release_groups(gids)
        return True

    def seer_sd_stats(self) -> dict[str, Any]:
        return self._seer_drafter().take_stats()
