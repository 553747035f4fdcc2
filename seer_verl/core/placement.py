"""Instance selection for one chunk: KV headroom, prefix-cache affinity, load balance (paper §3.2).

Because a chunk's output is bounded by its budget, its KV footprint is known before it runs:

    footprint = ceil((prompt_len + generated + chunk_budget) / block_size) * block_size

tokens, the KV the request's next chunk starts with: its context's KV at dispatch plus a *growth* of
at most the budget. The paper places a chunk only on an engine with room for the whole footprint, so an
engine never has to preempt (``SELECTINSTANCE(I, r.max_chunk_tokens, KV-usage)`` in Algorithm 2). Here the
context is always reserved in full and the in-flight chunks' growth times ``growth_share``: 1 is the paper,
below 1 over-commits the growth (the engine preempts if it runs out), above 1 keeps extra headroom for the
chunks that follow. If no engine has room the request waits.

**Siblings share their prompt's KV.** vLLM's prefix cache keeps one copy of a prompt's full KV blocks for every
running request that starts with it, so the chunks of one group in flight on one engine hold the group's prompt
once (:meth:`Placement.share_prompt`): the first such chunk counts its whole context, each further one its context
minus the prompt's full blocks. A group's prompt is the prompt of its first request; a later request of the group
shares it if its own prompt is at least as long (an agent's next turn extends the first turn's prompt).

Among engines with room, the OSDI version's cache-aware rule is used: prefer the engine that ran the
request's previous chunk (it holds the prefix KV, so the continuation prompt hits the prefix cache)
while the load is balanced, and fall back to the least-loaded engine (fewest in-flight chunks) when
that engine's in-flight count exceeds the least-loaded candidate's by more than
``affinity_threshold`` (32 in the paper's experiments). Among equally loaded engines, a new chunk goes where fewer
of its group's chunks run: a group's lengths correlate, and seer dispatches each group's probe before its siblings,
so without this a group's members landed 3:1 on one engine and its long members made one engine the tail
(simulated, no KV pressure, G = 4: seer 0.92x stock before, 0.97x after). The paper's pull of missing KV from a global
pool is not modelled: a request moved to another engine recomputes its prefix there.

:class:`Placement` owns the :class:`EngineState` table; :meth:`Placement.reserve` and
:meth:`Placement.release` are the only mutators of an engine's KV reservation and never over-commit.
"""

from __future__ import annotations

import math
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
        reserved_tokens: KV counted against the capacity for the chunks now in flight on this engine:
            their contexts plus ``growth_share`` times their possible growth.
        inflight: number of chunks now in flight on this engine (the load signal).
        alive: False once the engine has been declared failed.
        context_tokens: block-rounded context KV of the in-flight chunks at their dispatch.
        growth_sum: sum of the in-flight chunks' possible growth (block-rounded tokens).
    """

    engine_id: int
    capacity_tokens: int
    block_size: int = 16
    reserved_tokens: int = 0
    inflight: int = 0
    alive: bool = True
    context_tokens: int = 0
    growth_sum: int = 0

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
    ``"no_room"`` (the prefix engine is dead, full or lacks KV headroom: least-loaded); ``"evicted"`` (the caller
    judged the prefix no longer cached there, ``prefix=False``: least-loaded); ``"none"`` (no
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
        growth_share: share of the in-flight chunks' growth counted against the KV (``seer.kv_reserve``);
            1 = the whole growth (the engine never preempts).
    """

    __slots__ = ("_engines", "_by_id", "affinity_threshold", "max_inflight_per_engine", "growth_share",
                 "_prompts", "_group_chunks")

    def __init__(
        self,
        engines: Sequence[EngineState],
        affinity_threshold: int = 32,
        max_inflight_per_engine: int | None = None,
        growth_share: float = 1.0,
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
        if not 0.0 <= growth_share <= 8.0:
            raise ValueError(f"growth_share must be in [0, 8], got {growth_share!r}")
        self.growth_share = growth_share
        self._prompts: dict[int, int] = {}  # group id -> prompt tokens its requests share (share_prompt)
        self._group_chunks: dict[tuple[int, int], int] = {}  # (engine id, group id) -> its sharing chunks in flight

    def set_growth_share(self, share: float) -> None:
        """Change the share of the in-flight chunks' growth counted against the KV (``seer.kv_reserve="auto"``
        switches it between 1 and 0 during a rollout). Every engine's ``reserved_tokens`` is recounted as its
        contexts plus the new share of its growth, so a later :meth:`release` returns exactly what it counts; an
        engine may then count more than its capacity (it takes no new chunk until it drains)."""
        if not 0.0 <= share <= 8.0:
            raise ValueError(f"growth_share must be in [0, 8], got {share!r}")
        if share == self.growth_share:
            return
        self.growth_share = share
        for e in self._engines:
            if e.alive:
                e.reserved_tokens = e.context_tokens + self._growth(e.growth_sum)

    # -- prompt sharing --------------------------------------------------------------------------------

    def share_prompt(self, group_id: int, prompt_len: int) -> None:
        """Declare that the requests of ``group_id`` start with the same ``prompt_len`` prompt tokens (the first
        declaration of a group stands; later ones are ignored)."""
        if prompt_len < 0:
            raise ValueError(f"prompt_len must be >= 0, got {prompt_len}")
        self._prompts.setdefault(group_id, prompt_len)

    def sharing_group(self, req: RolloutRequest) -> int | None:
        """``req``'s group if its chunks share the group's prompt KV with their siblings, else None."""
        shared = self._prompts.get(req.group_id)
        return req.group_id if shared is not None and req.prompt_len >= shared else None

    def _shared_kv(self, e: EngineState, group: int | None) -> int:
        """Full KV blocks of ``group``'s prompt on ``e`` (0 without a sharing group)."""
        if group is None:
            return 0
        return (self._prompts[group] // e.block_size) * e.block_size

    def _discount(self, e: EngineState, group: int | None) -> int:
        """KV a new chunk of ``group`` need not count on ``e``: the prompt's full blocks if a sibling's chunk in
        flight there holds them."""
        if group is None or self._siblings(e, group) == 0:
            return 0
        return self._shared_kv(e, group)

    def _siblings(self, e: EngineState, group: int) -> int:
        """Chunks of ``group`` in flight on ``e`` (counted for groups that share their prompt)."""
        return self._group_chunks.get((e.engine_id, group), 0)

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
        """KV on ``engine_id`` at the end of a chunk of ``chunk_tokens`` tokens of ``req`` (see :meth:`split`)."""
        base, growth = self.split(self.engine(engine_id), req.prompt_len + req.generated, chunk_tokens)
        return base + growth

    def has_slot(self, e: EngineState) -> bool:
        """True if ``e`` is alive and below the in-flight cap (KV headroom not considered)."""
        cap = self.max_inflight_per_engine
        return e.alive and (cap is None or e.inflight < cap)

    def any_slot(self) -> bool:
        """True if at least one engine could accept one more chunk, KV permitting."""
        return any(self.has_slot(e) for e in self._engines)

    def split(self, e: EngineState, context_len: int, chunk_tokens: int) -> tuple[int, int]:
        """``(context KV, growth)`` on ``e`` of a chunk of ``chunk_tokens`` tokens after ``context_len``.

        The growth runs to the KV its *continuation* starts with, ``context_len + chunk_tokens`` (the engine
        itself holds one token less at the chunk's end: the last sampled token is fed by the next chunk).
        Reserving it keeps room for the request's next chunk on the engine that holds its KV.
        """
        base = e.footprint(context_len)
        return base, e.footprint(context_len + chunk_tokens) - base

    def _growth(self, growth_sum: int) -> int:
        share = self.growth_share
        return growth_sum if share == 1.0 else math.ceil(share * growth_sum)

    def need(self, e: EngineState, context_kv: int, growth_kv: int, group: int | None = None) -> int:
        """KV that ``e`` would count against its capacity with one more chunk ``(context_kv, growth_kv)`` of
        ``group`` (its prompt's full blocks not counted again where a sibling holds them)."""
        return (e.reserved_tokens + context_kv - self._discount(e, group)
                + self._growth(e.growth_sum + growth_kv) - self._growth(e.growth_sum))

    def expected_fits(self, e: EngineState, context_kv: int, growth_kv: int, group: int | None = None) -> bool:
        """True if ``e``'s *expected* KV with one more chunk fits: every context plus half of every chunk's growth
        (a running chunk has used half of its growth on average), whatever ``growth_share`` reserves."""
        return (e.context_tokens + context_kv - self._discount(e, group) + (e.growth_sum + growth_kv) / 2
                <= e.capacity_tokens)

    def contexts_fit(self, e: EngineState, context_kv: int, group: int | None = None) -> bool:
        """True if ``e``'s in-flight contexts plus one more context ``context_kv`` of ``group`` fit (no growth)."""
        return e.context_tokens + context_kv - self._discount(e, group) <= e.capacity_tokens

    def can_ever_fit(self, context_tokens: int) -> bool:
        """True if some alive engine, when empty, could hold a chunk ending at ``context_tokens``."""
        return any(e.alive and e.footprint(context_tokens) <= e.capacity_tokens for e in self._engines)

    # -- selection -------------------------------------------------------------------------------

    def decide(
        self,
        req: RolloutRequest,
        chunk_tokens: int,
        engines: Iterable[EngineState] | None = None,
        prefix: bool = True,
    ) -> PlacementDecision:
        """Choose an engine for the next chunk of ``req`` (``chunk_tokens`` = its budget).

        Candidates are the alive engines (of ``engines``, default all) with an in-flight slot and KV
        headroom for the chunk's context plus the growth reserve of all its chunks (:meth:`need`). The engine
        holding the request's prefix (``req.engine``) is chosen if it is a candidate and its in-flight count
        exceeds the smallest candidate in-flight count by at most ``affinity_threshold``; otherwise the
        least-loaded candidate is chosen: fewest in-flight chunks, then fewest chunks of the request's sharing group,
        then most free KV, then lowest id. ``prefix=False``: the prefix engine is no candidate for affinity (its cache
        no longer holds the request's KV), so the least-loaded candidate is chosen.
        """
        context_len = req.prompt_len + req.generated
        group = self.sharing_group(req)
        cap = self.max_inflight_per_engine
        best: EngineState | None = None
        affinity: EngineState | None = None
        for e in self._engines if engines is None else engines:
            if not e.alive or (cap is not None and e.inflight >= cap):
                continue
            free = e.capacity_tokens - e.reserved_tokens
            if self.need(e, *self.split(e, context_len, chunk_tokens), group) > e.capacity_tokens:
                continue
            if e.engine_id == req.engine:
                affinity = e
            if best is None:
                best = e
            else:
                best_free = best.capacity_tokens - best.reserved_tokens
                if ((e.inflight, self._siblings(e, req.group_id), -free, e.engine_id)
                        < (best.inflight, self._siblings(best, req.group_id), -best_free, best.engine_id)):
                    best = e
        if best is None:
            return PlacementDecision(None, "none")
        if req.engine is None:
            return PlacementDecision(best.engine_id, "first")
        if not prefix:
            return PlacementDecision(best.engine_id, "evicted")
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

    def reserve(self, engine_id: int, tokens: int, growth: int = 0, force: bool = False,
                group: int | None = None) -> None:
        """Reserve a chunk's KV (``tokens`` of context, ``growth`` more as it runs) and one in-flight slot.

        The engine then counts its contexts plus the growth reserve of all its chunks; that never exceeds
        its capacity at a reservation, unless ``force`` (a request continuing on the engine that holds its KV:
        the engine then has less room for new chunks until it drains). ``group``: the chunk's sharing group
        (:meth:`sharing_group`); its prompt's full blocks count once per engine. Raises :class:`PlacementError`
        if the engine is dead, at its in-flight cap, or (without ``force``) lacks room.
        """
        e = self.engine(engine_id)
        if not e.alive:
            raise PlacementError(f"cannot reserve on engine {engine_id}: it is dead")
        cap = self.max_inflight_per_engine
        if cap is not None and e.inflight >= cap:
            raise PlacementError(f"cannot reserve on engine {engine_id}: {e.inflight} chunks in flight, cap {cap}")
        if group is not None and group not in self._prompts:
            raise PlacementError(f"cannot reserve for group {group}: its prompt was not declared (share_prompt)")
        if tokens < self._shared_kv(e, group) or growth < 0 or (
                not force and self.need(e, tokens, growth, group) > e.capacity_tokens):
            raise PlacementError(
                f"cannot reserve {tokens} + {growth} (growth) KV tokens on engine {engine_id}: "
                f"{e.reserved_tokens}/{e.capacity_tokens} already reserved"
            )
        counted = tokens - self._discount(e, group)
        e.reserved_tokens += counted + self._growth(e.growth_sum + growth) - self._growth(e.growth_sum)
        e.context_tokens += counted
        e.growth_sum += growth
        e.inflight += 1
        if group is not None:
            key = (engine_id, group)
            self._group_chunks[key] = self._group_chunks.get(key, 0) + 1

    def release(self, engine_id: int, tokens: int, growth: int = 0, group: int | None = None) -> None:
        """Return a reservation made by :meth:`reserve` (the same ``tokens``, ``growth`` and ``group``, one slot).

        The group's prompt stays counted once while any of its chunks is in flight on the engine, whichever of
        them is released first."""
        e = self.engine(engine_id)
        if not e.alive:
            raise PlacementError(f"cannot release on engine {engine_id}: it is dead (its state was reset)")
        key = (engine_id, group)
        chunks = self._group_chunks.get(key, 0) if group is not None else 0
        counted = tokens - (self._shared_kv(e, group) if chunks > 1 else 0)
        if e.inflight < 1 or tokens < 0 or growth < 0 or growth > e.growth_sum or (
                group is not None and chunks < 1) or (
                counted + self._growth(e.growth_sum) - self._growth(e.growth_sum - growth) > e.reserved_tokens):
            raise PlacementError(
                f"release of {tokens} + {growth} (growth) KV tokens on engine {engine_id} does not match its "
                f"reservations ({e.reserved_tokens} tokens, {e.growth_sum} of them growth, {e.inflight} chunks in "
                "flight)"
            )
        e.reserved_tokens -= counted + self._growth(e.growth_sum) - self._growth(e.growth_sum - growth)
        e.context_tokens -= counted
        e.growth_sum -= growth
        e.inflight -= 1
        if group is not None:
            if chunks > 1:
                self._group_chunks[key] = chunks - 1
            else:
                del self._group_chunks[key]

    def mark_dead(self, engine_id: int) -> None:
        """Declare an engine failed: it takes no more chunks and its reservations are dropped.

        The KV it held is lost with it; the caller re-queues the chunks that were in flight there.
        """
        e = self.engine(engine_id)
        e.alive = False
        e.reserved_tokens = e.context_tokens = e.growth_sum = 0
        e.inflight = 0
        for key in [k for k in self._group_chunks if k[0] == engine_id]:
            del self._group_chunks[key]
