"""``seer``: context-aware scheduling (paper §3.3, Appendix Algorithm 2).

Goal: approximate longest-first scheduling (LFS), which shortens the rollout's long tail, without
knowing output lengths in advance. Two queues:

* ``Q_spec`` (high priority): each group's speculative request (probe), served shortest-first (SFS)
  by tokens generated so far. Short probes finish fast and reveal their group's length; probes that
  keep running expose likely long groups early.
* ``C_rest`` (low priority, served only when no probe waits): every other request, served
  approximately longest-first by its group's length estimate L̂_g
  (:class:`~seer_verl.core.context.GroupLengthEstimator`: max finished length in the group, the
  ``max_tokens`` upper bound until one member finished). Ties go to the request that has waited
  longest.

Both queues hold only *waiting* requests (the paper's active set R read as the Request Buffer's
waiting requests), so ``C_rest`` is served as soon as every probe is in flight or finished. When a
group's estimate changes, its waiting ``C_rest`` members are re-filed under the new key (O(G log n));
their old entries are invalidated by the group's estimate version. The anti-starvation safeguard
("underserved" requests are scheduled now and then) is applied on top of every policy by
:class:`~seer_verl.core.scheduler.Scheduler`.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..context import GroupLengthEstimator
from ..request import RolloutRequest
from .base import LazyQueue, SchedulingPolicy, register_policy

__all__ = ["SeerPolicy"]


@register_policy
class SeerPolicy(SchedulingPolicy):
    """Probes shortest-generated-first, then the rest by largest group length estimate."""

    name = "seer"

    def __init__(self, requests: Sequence[RolloutRequest]) -> None:
        super().__init__(requests)
        self.estimator = GroupLengthEstimator(requests)
        self._members: dict[int, list[int]] = {}
        for r in requests:
            self._members.setdefault(r.group_id, []).append(r.req_id)
        self._spec = LazyQueue()
        est = self.estimator
        self._rest = LazyQueue(stamp_of=lambda rid: est.version(requests[rid].group_id))

    def priority(self, req: RolloutRequest) -> tuple[int, ...]:
        """``(0, generated)`` for a probe, ``(1, -L̂_g)`` otherwise (smaller = served first)."""
        if req.is_probe:
            return (0, req.generated)
        return (1, -self.estimator.estimate(req.group_id))

    def push(self, req: RolloutRequest, seq: int) -> None:
        if req.is_probe:
            self._spec.push(req.generated, seq, req.req_id)
        else:
            g = req.group_id
            self._rest.push(-self.estimator.estimate(g), seq, req.req_id, self.estimator.version(g))

    def pop(self) -> RolloutRequest | None:
        rid = self._spec.pop()
        if rid is None:
            rid = self._rest.pop()
        return None if rid is None else self._requests[rid]

    def discard(self, req_id: int) -> None:
        self._spec.discard(req_id)
        self._rest.discard(req_id)

    def on_added(self, req: RolloutRequest) -> None:
        """A late request (an agent's next turn) joins its group: its estimate and, if changed, re-filing."""
        g, est = req.group_id, self.estimator
        before = est.version(g) if g in est else None
        est.add(req)
        self._members.setdefault(g, []).append(req.req_id)
        if before is not None and est.version(g) != before:
            self._refile(g)

    def on_finished(self, req: RolloutRequest) -> None:
        """UpdateEstimate(L̂_g, len(r)); re-file the group's waiting requests if L̂_g changed."""
        if self.estimator.observe(req.group_id, req.generated):
            self._refile(req.group_id)

    def on_progress(self, req: RolloutRequest) -> None:
        """A running member raises L̂_g to its length so far (once the group has a finished member)."""
        if self.estimator.observe_progress(req.group_id, req.generated):
            self._refile(req.group_id)

    def _refile(self, g: int) -> None:
        key, version = -self.estimator.estimate(g), self.estimator.version(g)
        rest = self._rest
        for rid in self._members[g]:
            seq = rest.seq_of(rid)
            if seq is not None:
                rest.push(key, seq, rid, version)

    @property
    def probes_waiting(self) -> int:
        """Number of probes in ``Q_spec``."""
        return len(self._spec)

    def __len__(self) -> int:
        return len(self._spec) + len(self._rest)
