"""Common machinery of the scheduling policies: a priority queue with lazy invalidation.

A policy orders the requests *waiting* in the Request Buffer (not running a chunk); it knows nothing
about engines. Every time a request enters the waiting set it gets a fresh ticket ``seq`` (strictly
increasing), and the policy files it under a priority key. Keys can go stale (a request is dispatched
by another path, or its group's length estimate changes); rather than searching the heap, stale
entries stay in it and are skipped when they surface ("lazy invalidation"). Each push and pop is
O(log n) amortised; the heap is rebuilt when stale entries outnumber live ones.
"""

from __future__ import annotations

import heapq
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar

from ..request import RolloutRequest

__all__ = ["LazyQueue", "POLICIES", "SchedulingPolicy", "register_policy"]

Key = int | tuple[int, ...]


class LazyQueue:
    """Min-heap of waiting request ids ordered by ``(key, seq)``, with lazy deletion.

    An entry ``(key, seq, req_id, stamp)`` is *valid* iff the request is still filed here under
    ticket ``seq`` and, when ``stamp_of`` is given, ``stamp_of(req_id) == stamp`` (the key is still
    current). Re-filing a request under a new key with a new stamp invalidates its old entries.
    """

    __slots__ = ("_heap", "_live", "_stamp_of")

    def __init__(self, stamp_of: Callable[[int], int] | None = None) -> None:
        self._heap: list[tuple[Key, int, int, int]] = []
        self._live: dict[int, int] = {}
        self._stamp_of = stamp_of

    def push(self, key: Key, seq: int, req_id: int, stamp: int = 0) -> None:
        """File ``req_id`` (ticket ``seq``) under ``key``; re-filing replaces the previous entry."""
        self._live[req_id] = seq
        heapq.heappush(self._heap, (key, seq, req_id, stamp))
        if len(self._heap) > 2 * len(self._live) + 64:
            self._compact()

    def _valid(self, entry: tuple[Key, int, int, int]) -> bool:
        _, seq, req_id, stamp = entry
        if self._live.get(req_id) != seq:
            return False
        return self._stamp_of is None or self._stamp_of(req_id) == stamp

    def _compact(self) -> None:
        seen: set[int] = set()
        kept = []
        for entry in self._heap:
            if self._valid(entry) and entry[2] not in seen:
                seen.add(entry[2])
                kept.append(entry)
        heapq.heapify(kept)
        self._heap = kept

    def pop(self) -> int | None:
        """Remove and return the req_id with the smallest valid ``(key, seq)``, or None if empty."""
        heap = self._heap
        while heap:
            entry = heapq.heappop(heap)
            if self._valid(entry):
                del self._live[entry[2]]
                return entry[2]
        return None

    def discard(self, req_id: int) -> None:
        """Remove ``req_id`` if filed (O(1); its heap entries become stale)."""
        self._live.pop(req_id, None)

    def seq_of(self, req_id: int) -> int | None:
        return self._live.get(req_id)

    def __contains__(self, req_id: object) -> bool:
        return req_id in self._live

    def __len__(self) -> int:
        return len(self._live)


class SchedulingPolicy(ABC):
    """Orders the waiting requests of one rollout. Subclasses register a ``name``.

    Protocol (driven by :class:`~seer_verl.core.scheduler.Scheduler`): :meth:`push` when a request
    enters (or re-enters) the waiting set with ticket ``seq``; :meth:`pop` to take the highest
    priority request; :meth:`discard` when a request leaves the waiting set by another path;
    :meth:`on_finished` when a request finishes (context learning hook).
    """

    name: ClassVar[str]
    #: the policy orders by each request's true length (``true_len``), known only in simulation or replay: the
    #: bench gives it the lengths an earlier policy of the same run recorded
    needs_true_lengths: ClassVar[bool] = False

    def __init__(self, requests: Sequence[RolloutRequest]) -> None:
        self._requests = requests

    @abstractmethod
    def push(self, req: RolloutRequest, seq: int) -> None:
        """``req`` is waiting with ticket ``seq`` (lower ``seq`` = entered earlier)."""

    @abstractmethod
    def pop(self) -> RolloutRequest | None:
        """Remove and return the highest-priority waiting request, or None if none waits."""

    @abstractmethod
    def discard(self, req_id: int) -> None:
        """Forget ``req_id`` if it is waiting here (it was dispatched by the anti-starvation path)."""

    @abstractmethod
    def priority(self, req: RolloutRequest) -> tuple[int, ...]:
        """The request's current priority key (smaller = served earlier), ticket excluded."""

    @abstractmethod
    def __len__(self) -> int:
        """Number of requests filed in the policy."""

    def on_added(self, req: RolloutRequest) -> None:  # noqa: B027 (optional hook)
        """Called when ``req`` joined the rollout after it started (before it is pushed). Default: nothing."""

    def on_finished(self, req: RolloutRequest) -> None:  # noqa: B027 (optional hook)
        """Called once when ``req`` finishes. Default: nothing to learn."""

    def on_progress(self, req: RolloutRequest) -> None:  # noqa: B027 (optional hook)
        """Called when a chunk of ``req`` completed and the request goes on. Default: nothing to learn."""


#: every scheduling policy by its ``name`` (the ``seer.policy`` values): the training config, the bench's Seer
#: arms and the simulator's all come from here. A new policy is one module whose class is decorated with
#: :func:`register_policy`, imported by ``policies/__init__.py``.
POLICIES: dict[str, type[SchedulingPolicy]] = {}


def register_policy(cls: type[SchedulingPolicy]) -> type[SchedulingPolicy]:
    """Class decorator: register ``cls`` under ``cls.name`` (as verl's ``register_adv_est``)."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{cls.__qualname__}.name must be a non-empty string to register a scheduling policy")
    if POLICIES.get(name, cls) is not cls:
        raise ValueError(f"scheduling policy {name!r} is registered twice ({POLICIES[name].__qualname__}, "
                         f"{cls.__qualname__})")
    POLICIES[name] = cls
    return cls
