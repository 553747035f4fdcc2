"""Online context learning: per-group output-length estimates (paper §3.3, the Context Manager).

The G responses of a GRPO group share a prompt, and their lengths are correlated. Seer learns each
group's length online, during the rollout, from the group's own finished responses:

    L̂_g = max generation length among the finished requests of group g

Until a member of g finishes, L̂_g is the conservative upper bound, the original ``max_tokens``, so
an unknown group is treated as a potential tail group. After the first finish the estimate is only
ever raised (running max). A response truncated at ``max_tokens`` counts with length ``max_tokens``.

Each change of L̂_g bumps the group's *version*, which lets priority queues keyed by L̂_g drop stale
entries lazily (see :mod:`seer_verl.core.policies.seer`).
"""

from __future__ import annotations

from collections.abc import Iterable

from .request import RolloutRequest

__all__ = ["GroupLengthEstimator"]


class GroupLengthEstimator:
    """L̂_g for every group of a rollout, with a version counter per group."""

    __slots__ = ("_estimate", "_version", "_finished")

    def __init__(self, requests: Iterable[RolloutRequest]) -> None:
        self._estimate: dict[int, int] = {}
        self._version: dict[int, int] = {}
        self._finished: dict[int, int] = {}
        for req in requests:
            g = req.group_id
            if g not in self._estimate:
                self._estimate[g] = req.max_tokens
                self._version[g] = 0
                self._finished[g] = 0
            elif req.max_tokens > self._estimate[g]:
                self._estimate[g] = req.max_tokens

    def __contains__(self, group_id: object) -> bool:
        return group_id in self._estimate

    def add(self, req: RolloutRequest) -> None:
        """A request joined the rollout after it started: a new group starts from its ``max_tokens`` bound; a
        group none of whose members has finished takes the larger bound; a learnt estimate stays as it is."""
        g = req.group_id
        if g not in self._estimate:
            self._estimate[g] = req.max_tokens
            self._version[g] = 0
            self._finished[g] = 0
        elif self._finished[g] == 0 and req.max_tokens > self._estimate[g]:
            self._estimate[g] = req.max_tokens
            self._version[g] += 1

    def estimate(self, group_id: int) -> int:
        """Current L̂_g: the generation upper bound until a member finished, then the running max."""
        return self._estimate[group_id]

    def version(self, group_id: int) -> int:
        """Incremented whenever :meth:`estimate` of the group changes."""
        return self._version[group_id]

    def finished(self, group_id: int) -> int:
        """Number of the group's requests observed as finished."""
        return self._finished[group_id]

    def observe_progress(self, group_id: int, generated: int) -> bool:
        """A member of the group is still running after ``generated`` tokens; return True if L̂_g changed.

        Once the group has a finished member, L̂_g is at least the longest generation of any member so far,
        finished or not: a sibling that keeps running shows the group is longer than its first finishers."""
        if self._finished[group_id] == 0 or generated <= self._estimate[group_id]:
            return False
        self._estimate[group_id] = generated
        self._version[group_id] += 1
        return True

    def observe(self, group_id: int, length: int) -> bool:
        """Record a finished request of ``length`` generated tokens; return True if L̂_g changed.

        The first finish replaces the upper-bound prior (it may lower the estimate); later finishes
        can only raise it.
        """
        first = self._finished[group_id] == 0
        self._finished[group_id] += 1
        old = self._estimate[group_id]
        new = length if first else max(old, length)
        if new == old:
            return False
        self._estimate[group_id] = new
        self._version[group_id] += 1
        return True
