"""Instance selection for one chunk: KV headroom, prefix-cache affinity, load balance (paper §3.2).

Because a chunk's output is bounded by its budget, its KV footprint is known before it runs:

    footprint = ceil((prompt_len + generated + chunk_budget) / block_size) * block_size

tokens, the KV the request can hold at the end of the chunk. Seer places a chunk only on an engine
with room for that footprint, so an engine never has to preempt (``SELECTINSTANCE(I,
r.max_chunk_tokens, KV-usage)`` in Algorithm 2); if no engine has room the request waits.

Among engines with room, the OSDI version's cache-aware rule is used: prefer the engine that ran the
request's previous chunk (it holds the prefix KV, so the continuation prompt hits the prefix cache)
while the load is balanced, and fall back to the least-loaded engine (fewest in-flight chunks) when
that engine's in-flight count exceeds the least-loaded candidate's by more than
``affinity_threshold`` (32 in the paper's experiments). The paper's pull of missing KV from a global
pool is not modelled: a request moved to another engine recomputes its prefix there.

:class:`Placement` owns the :class:`EngineState` table; :meth:`Placement.reserve` and
:meth:`Placement.release` are the only mutators of an engine's KV reservation and never over-commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .errors import PlacementError
from .request import RolloutRequest

__all__ = ["EngineState", "PlacementDecision", "Placement", "kv_footprint"]


def kv_footprint(context_tokens: int, block_size: int) -> int:
    """``context_tokens`` rounded up to whole KV blocks of ``block_size`` tokens."""
    return -(-context_tokens // block_size) * block_size


@dataclass(slots=True)
class EngineState:
    """The controller's view of one inference engine.

    Attributes:
        engine_id: the engine's id (any int; unique within a rollout).
        capacity_tokens: KV-cache capacity in tokens (e.g. vLLM's ``num_gpu_blocks * block_size``).
        block_size: KV block size in tokens; reservations are rounded up to whole blocks.
        reserved_tokens: KV reserved by the chunks now in flight on this engine.
        inflight: number of chunks now in flight on this engine (the load signal).
        alive: False once the engine has been declared failed.
    """

    engine_id: int
    capacity_tokens: int
    block_size: int = 16
    reserved_tokens: int = 0
    inflight: int = 0
    alive: bool = True

    @property
    def free_tokens(self) -> int:
        """KV tokens not reserved by in-flight chunks."""
        return self.capacity_tokens - self.reserved_tokens

    def footprint(self, context_tokens: int) -> int:
        """KV reservation, on this engine, of a chunk that ends with ``context_tokens`` tokens."""
        return kv_footprint(context_tokens, self.block_size)


@dataclass(frozen=True, slots=True)
class PlacementDecision:
    """Result of :meth:`Placement.decide`.

    ``reason`` is one of: ``"affinity"`` (placed on the engine holding the prefix);
    ``"first"`` (no prefix engine yet: least-loaded); ``"imbalance"`` (the prefix engine has room but
    is more than ``affinity_threshold`` in-flight chunks above the least-loaded candidate);
    ``"no_room"`` (the prefix engine is dead, full or lacks KV headroom: least-loaded); ``"none"`` (no
    engine can take the chunk now; ``engine_id`` is None).
    """

    engine_id: int | None
    reason: str


class Placement:
    """Chooses an engine for a chunk and keeps the per-engine KV reservations.

    Args:
        engines: the engines of the rollout (ids must be unique). The objects are held, not copied.
        affinity_threshold: in-flight imbalance above which prefix affinity yields to least-loaded.
        max_inflight_per_engine: optional cap on concurrent chunks per engine (like vLLM's
            ``max_num_seqs``); ``None`` means KV headroom is the only limit.
    """

    __slots__ = ("_engines", "_by_id", "affinity_threshold", "max_inflight_per_engine")

    def __init__(
        self,
        engines: Sequence[EngineState],
        affinity_threshold: int = 32,
        max_inflight_per_engine: int | None = None,
    ) -> None:
        if len(engines) == 0:
            raise ValueError("placement needs at least one engine")
        by_id: dict[int, EngineState] = {}
        for e in engines:
            if e.engine_id in by_id:
                raise ValueError(f"engine id {e.engine_id} appears twice")
            if e.capacity_tokens < 0 or e.block_size < 1:
                raise ValueError(
                    f"engine {e.engine_id}: capacity_tokens must be >= 0 and block_size >= 1, "
                    f"got {e.capacity_tokens} and {e.block_size}"
                )
            if e.reserved_tokens < 0 or e.reserved_tokens > e.capacity_tokens or e.inflight < 0:
                raise ValueError(
                    f"engine {e.engine_id}: inconsistent state reserved_tokens={e.reserved_tokens}, "
                    f"inflight={e.inflight} for capacity {e.capacity_tokens}"
                )
            by_id[e.engine_id] = e
        self._engines: list[EngineState] = list(engines)
        self._by_id = by_id
        self.affinity_threshold = affinity_threshold
        self.max_inflight_per_engine = max_inflight_per_engine

    # -- queries ---------------------------------------------------------------------------------

    @property
    def engines(self) -> list[EngineState]:
        return self._engines

    def engine(self, engine_id: int) -> EngineState:
        try:
            return self._by_id[engine_id]
        except KeyError:
            raise KeyError(f"unknown engine id {engine_id}") from None

    def alive_engines(self) -> list[EngineState]:
        return [e for e in self._engines if e.alive]

    def footprint(self, req: RolloutRequest, chunk_tokens: int, engine_id: int) -> int:
        """KV tokens to reserve on ``engine_id`` for a chunk of ``chunk_tokens`` tokens of ``req``."""
        return self.engine(engine_id).footprint(req.prompt_len + req.generated + chunk_tokens)

    def has_slot(self, e: EngineState) -> bool:
        """True if ``e`` is alive and below the in-flight cap (KV headroom not considered)."""
        cap = self.max_inflight_per_engine
        return e.alive and (cap is None or e.inflight < cap)

    def any_slot(self) -> bool:
        """True if at least one engine could accept one more chunk, KV permitting."""
        return any(self.has_slot(e) for e in self._engines)

    def fits(self, e: EngineState, context_tokens: int) -> bool:
        """True if a chunk ending at ``context_tokens`` can be reserved on ``e`` right now."""
        return self.has_slot(e) and e.footprint(context_tokens) <= e.capacity_tokens - e.reserved_tokens

    def can_ever_fit(self, context_tokens: int) -> bool:
        """True if some alive engine, when empty, could hold a chunk ending at ``context_tokens``."""
        return any(e.alive and e.footprint(context_tokens) <= e.capacity_tokens for e in self._engines)

    # -- selection -------------------------------------------------------------------------------

    def decide(
        self,
        req: RolloutRequest,
        chunk_tokens: int,
        engines: Iterable[EngineState] | None = None,
    ) -> PlacementDecision:
        """Choose an engine for the next chunk of ``req`` (``chunk_tokens`` = its budget).

        Candidates are the alive engines (of ``engines``, default all) with an in-flight slot and KV
        headroom ``capacity - reserved >= footprint``. The engine holding the request's prefix
        (``req.engine``) is chosen if it is a candidate and its in-flight count exceeds the smallest
        candidate in-flight count by at most ``affinity_threshold``; otherwise the least-loaded
        candidate is chosen: fewest in-flight chunks, then most free KV, then lowest id.
        """
        context_tokens = req.prompt_len + req.generated + chunk_tokens
        cap = self.max_inflight_per_engine
        best: EngineState | None = None
        affinity: EngineState | None = None
        for e in self._engines if engines is None else engines:
            if not e.alive or (cap is not None and e.inflight >= cap):
                continue
            free = e.capacity_tokens - e.reserved_tokens
            if e.footprint(context_tokens) > free:
                continue
            if e.engine_id == req.engine:
                affinity = e
            if best is None:
                best = e
            else:
                best_free = best.capacity_tokens - best.reserved_tokens
                if (e.inflight, -free, e.engine_id) < (best.inflight, -best_free, best.engine_id):
                    best = e
        if best is None:
            return PlacementDecision(None, "none")
        if req.engine is None:
            return PlacementDecision(best.engine_id, "first")
        if affinity is None:
            return PlacementDecision(best.engine_id, "no_room")
        if affinity.inflight - best.inflight <= self.affinity_threshold:
            return PlacementDecision(affinity.engine_id, "affinity")
        return PlacementDecision(best.engine_id, "imbalance")

    def select(
        self,
        req: RolloutRequest,
        chunk_tokens: int,
        engines: Iterable[EngineState] | None = None,
    ) -> int | None:
        """The engine id chosen by :meth:`decide`, or ``None`` if no engine can take the chunk now."""
        return self.decide(req, chunk_tokens, engines).engine_id

    # -- mutation --------------------------------------------------------------------------------

    def reserve(self, engine_id: int, tokens: int) -> None:
        """Reserve ``tokens`` KV tokens and one in-flight slot on an engine; never over-commits.

        Raises :class:`PlacementError` if the engine is dead, at its in-flight cap, or lacks room.
        """
        e = self.engine(engine_id)
        if not e.alive:
            raise PlacementError(f"cannot reserve on engine {engine_id}: it is dead")
        cap = self.max_inflight_per_engine
        if cap is not None and e.inflight >= cap:
            raise PlacementError(f"cannot reserve on engine {engine_id}: {e.inflight} chunks in flight, cap {cap}")
        if tokens < 0 or tokens > e.capacity_tokens - e.reserved_tokens:
            raise PlacementError(
                f"cannot reserve {tokens} KV tokens on engine {engine_id}: "
                f"{e.reserved_tokens}/{e.capacity_tokens} already reserved"
            )
        e.reserved_tokens += tokens
        e.inflight += 1

    def release(self, engine_id: int, tokens: int) -> None:
        """Return a reservation made by :meth:`reserve` (``tokens`` and one in-flight slot)."""
        e = self.engine(engine_id)
        if not e.alive:
            raise PlacementError(f"cannot release on engine {engine_id}: it is dead (its state was reset)")
        if e.inflight < 1 or tokens < 0 or tokens > e.reserved_tokens:
            raise PlacementError(
                f"release of {tokens} KV tokens on engine {engine_id} does not match its reservations "
                f"({e.reserved_tokens} tokens, {e.inflight} chunks in flight)"
            )
        e.reserved_tokens -= tokens
        e.inflight -= 1

    def mark_dead(self, engine_id: int) -> None:
        """Declare an engine failed: it takes no more chunks and its reservations are dropped.

        The KV it held is lost with it; the caller re-queues the chunks that were in flight there.
        """
        e = self.engine(engine_id)
        e.alive = False
        e.reserved_tokens = 0
        e.inflight = 0
