"""The counters of one rollout batch: :class:`RolloutStats`, kept by the controller and logged by verl as
``timing_s/seer/<name>`` (every field; ``docs/metrics.md`` has the table)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["RolloutStats"]


@dataclass
class RolloutStats:
    """What the controller did in one batch (all counts, except ``max_passed_over``, a maximum)."""

    dispatches: int = 0                    # chunks sent to engines (= dispatch decisions)
    probe_dispatches: int = 0              # chunks of each group's probe request
    starvation_picks: int = 0              # requests served by the anti-starvation rule, not the policy
    starvation_blocks: int = 0             # dispatch rounds stopped to hold freed KV for a starved request
    hol_skips: int = 0                     # waiting requests skipped because their chunk fit on no engine
    chunks_completed: int = 0
    tokens_generated: int = 0
    requests_finished: int = 0
    finished_stop: int = 0                 # ended by EOS or a stop token
    finished_length: int = 0               # ended by their length budget
    engine_failures: int = 0               # engines declared lost
    chunks_discarded: int = 0              # in-flight chunks lost with an engine
    requests_redispatched: int = 0         # their requests, re-queued from their last completed chunk
    affinity_hits: int = 0                 # chunks placed on the engine holding their prefix
    affinity_misses: int = 0               # ... placed elsewhere
    affinity_imbalance_overrides: int = 0  # misses because the prefix engine was past the imbalance threshold
    first_placements: int = 0              # first chunks (no prefix engine yet)
    max_passed_over: int = 0               # most dispatch decisions one request waited through
    continuations: int = 0                 # chunks that continued their request at once on the engine holding its KV
    growth_reserved: int = 0               # chunks placed while the whole growth was reserved (kv_reserve 1, or auto on)
    outranked: int = 0                     # continuations on a full engine ahead of a later-started chunk there
    tail_moves: int = 0                    # continuations moved in the tail to an engine with less continuing work
    held_for_final: int = 0                # waiting requests held for an engine whose final chunks free room

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
