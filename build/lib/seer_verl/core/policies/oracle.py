"""``oracle``: longest-first scheduling on the *true* output lengths (the paper's Oracle, §3.3/§4.4).

The upper bound that context-aware scheduling approximates: every request's true length is known in
advance (only possible in simulation or replay) and the waiting requests are served longest-first
(LFS), ties by waiting order. A request's key is ``min(true_len, max_tokens)``, the number of tokens
it will really generate.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..request import RolloutRequest
from .base import LazyQueue, SchedulingPolicy, register_policy

__all__ = ["OraclePolicy"]


@register_policy
class OraclePolicy(SchedulingPolicy):
    """Longest true length first. Every request of the batch must carry ``true_len`` (requests added later may
    not: they rank by ``max_tokens``)."""

    name = "oracle"
    needs_true_lengths = True

    def __init__(self, requests: Sequence[RolloutRequest]) -> None:
        missing = [r.req_id for r in requests if r.true_len is None]
        if missing:
            shown = ", ".join(map(str, missing[:8])) + (", ..." if len(missing) > 8 else "")
            raise ValueError(
                f"seer.policy='oracle' needs the true length (true_len) of every request; "
                f"{len(missing)} of {len(requests)} requests have none (req_ids {shown})"
            )
        super().__init__(requests)
        self._queue = LazyQueue()

    def priority(self, req: RolloutRequest) -> tuple[int, ...]:
        # a request added during the rollout (an agent's next turn) may come without a true length: it is then
        # treated as the longest it can be
        length = req.max_tokens if req.true_len is None else min(req.true_len, req.max_tokens)
        return (-length,)

    def push(self, req: RolloutRequest, seq: int) -> None:
        self._queue.push(self.priority(req)[0], seq, req.req_id)

    def pop(self) -> RolloutRequest | None:
        rid = self._queue.pop()
        return None if rid is None else self._requests[rid]

    def discard(self, req_id: int) -> None:
        self._queue.discard(req_id)

    def __len__(self) -> int:
        return len(self._queue)
