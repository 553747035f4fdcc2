"""``divided``: divided rollout with first-come-first-served order (the paper's "No-Context" variant).

Requests are chunked and re-dispatched exactly as in Seer, but the waiting requests are served in the
order they entered the waiting set (oldest ticket first). This isolates the gain of divided rollout
(bounded chunk footprints, no preemption, chunk-level load balance) from context-aware scheduling.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..request import RolloutRequest
from .base import LazyQueue, SchedulingPolicy, register_policy

__all__ = ["FcfsPolicy"]


@register_policy
class FcfsPolicy(SchedulingPolicy):
    """Oldest-waiting first."""

    name = "divided"

    def __init__(self, requests: Sequence[RolloutRequest]) -> None:
        super().__init__(requests)
        self._queue = LazyQueue()

    def push(self, req: RolloutRequest, seq: int) -> None:
        self._queue.push(0, seq, req.req_id)

    def pop(self) -> RolloutRequest | None:
        rid = self._queue.pop()
        return None if rid is None else self._requests[rid]

    def discard(self, req_id: int) -> None:
        self._queue.discard(req_id)

    def priority(self, req: RolloutRequest) -> tuple[int, ...]:
        return (0,)

    def __len__(self) -> int:
        return len(self._queue)
