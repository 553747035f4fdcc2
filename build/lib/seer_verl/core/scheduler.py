"""The waiting set of the Request Buffer: policy order plus the anti-starvation safeguard.

:class:`Scheduler` tracks which requests are waiting for their next chunk and asks the selected
policy (:mod:`seer_verl.core.policies`) for the order in which to serve them. On top of every
policy it applies Seer's safeguard against starvation (paper §3.3: requests of underserved groups
are scheduled now and then): a *dispatch decision* is one chunk dispatched; a waiting request is
*passed over* by every decision made while it waits. A request passed over ``starvation_bound``
times is served next, before the policy's choice, oldest first. Together with the controller's rule
that a starved request which does not fit anywhere blocks further dispatches until it fits, a
request that starts waiting while ``k`` requests already wait is passed over at most
``starvation_bound + k`` times.

Finding the oldest waiting request is O(1) amortised (a FIFO of tickets with lazy deletion), so the
safeguard adds no per-decision scan.
"""

from __future__ import annotations

from collections import deque

from .policies import SchedulingPolicy
from .request import RolloutRequest

__all__ = ["Scheduler"]


class Scheduler:
    """Waiting requests, served in policy order with an anti-starvation override.

    Protocol (driven by :class:`~seer_verl.core.controller.RolloutController`):

    * :meth:`enqueue` when a request starts waiting (start of rollout, after a chunk, after its
      engine failed); it gets a new ticket.
    * :meth:`starved` to find a request that must be served next, then :meth:`dispatched`.
    * otherwise :meth:`pop` the policy's choice, then either :meth:`dispatched` (placed) or
      :meth:`putback` (no engine has room; it keeps its ticket and age).
    """

    __slots__ = ("policy", "starvation_bound", "_seq", "_waiting", "_fifo", "_requests")

    def __init__(self, policy: SchedulingPolicy, requests: list[RolloutRequest], starvation_bound: int) -> None:
        if starvation_bound < 0:
            raise ValueError(f"starvation_bound must be >= 0, got {starvation_bound}")
        self.policy = policy
        self.starvation_bound = starvation_bound
        self._requests = requests
        self._seq = 0
        # req_id -> (ticket, decision count when it started waiting)
        self._waiting: dict[int, tuple[int, int]] = {}
        # (ticket, req_id, decision count at entry), in ticket order; stale entries skipped lazily
        self._fifo: deque[tuple[int, int, int]] = deque()

    def enqueue(self, req: RolloutRequest, decision: int) -> None:
        """``req`` starts waiting now (``decision`` = dispatch decisions made so far)."""
        if req.req_id in self._waiting:
            raise RuntimeError(f"request {req.req_id} is already waiting")
        seq = self._seq
        self._seq += 1
        self._waiting[req.req_id] = (seq, decision)
        self._fifo.append((seq, req.req_id, decision))
        self.policy.push(req, seq)

    def _oldest(self) -> tuple[int, int, int] | None:
        fifo, waiting = self._fifo, self._waiting
        while fifo:
            seq, rid, _ = fifo[0]
            entry = waiting.get(rid)
            if entry is not None and entry[0] == seq:
                return fifo[0]
            fifo.popleft()
        return None

    def oldest(self) -> RolloutRequest | None:
        """The request that has been waiting longest, or None."""
        head = self._oldest()
        return None if head is None else self._requests[head[1]]

    def passed_over(self, req_id: int, decision: int) -> int:
        """Decisions made since ``req_id`` started waiting (it must be waiting)."""
        return decision - self._waiting[req_id][1]

    def starved(self, decision: int) -> RolloutRequest | None:
        """The oldest waiting request if it has been passed over ``starvation_bound`` times or more."""
        head = self._oldest()
        if head is None or decision - head[2] < self.starvation_bound:
            return None
        return self._requests[head[1]]

    def pop(self) -> RolloutRequest | None:
        """The policy's highest-priority request (removed from the policy, still waiting)."""
        return self.policy.pop()

    def putback(self, req: RolloutRequest) -> None:
        """Return a request obtained from :meth:`pop` that could not be placed; keeps its ticket."""
        entry = self._waiting.get(req.req_id)
        if entry is not None:
            self.policy.push(req, entry[0])

    def dispatched(self, req: RolloutRequest, decision: int) -> int:
        """``req`` leaves the waiting set (a chunk was dispatched); return how often it was passed over."""
        seq, entered = self._waiting.pop(req.req_id)
        self.policy.discard(req.req_id)
        return decision - entered

    def on_finished(self, req: RolloutRequest) -> None:
        """Forward a finished request to the policy's context learning."""
        self.policy.on_finished(req)

    def on_progress(self, req: RolloutRequest) -> None:
        """Forward a completed chunk of an unfinished request to the policy's context learning."""
        self.policy.on_progress(req)

    def __contains__(self, req_id: object) -> bool:
        return req_id in self._waiting

    def __len__(self) -> int:
        return len(self._waiting)
