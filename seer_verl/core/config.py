"""Configuration of the Seer rollout core (config group ``seer.*``).

:class:`SeerConfig` holds the knobs of divided rollout, placement and context-aware scheduling.
:meth:`SeerConfig.validate` reports a bad value as ``ValueError`` naming the key (``seer.<field>``),
the value given and what is allowed, so that a wrong YAML/CLI override fails before any engine starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from .policies import POLICY_NAMES, check_policy_name

__all__ = ["SeerConfig", "POLICY_NAMES"]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(slots=True)
class SeerConfig:
    """Knobs of the Seer rollout controller.

    Attributes:
        policy: waiting-request order: ``"seer"`` (context-aware, paper §3.3), ``"divided"``
            (divided rollout with FCFS order, the paper's No-Context variant) or ``"oracle"``
            (longest-first on true lengths; simulation only).
        chunk_size: tokens per generation chunk (paper §3.2; the value is not given in the paper,
            secondary sources say 8K). Each chunk's ``max_tokens`` is ``min(chunk_size, remaining)``.
        affinity_threshold: in-flight imbalance (chunks) above which a chunk leaves the engine that
            holds its prefix KV for the least-loaded one (32 in the paper's OSDI experiments).
        starvation_bound: dispatch decisions a waiting request may be passed over before it is
            served next (anti-starvation). ``None`` = 4 x the number of requests of the rollout.
            0 turns every policy into first-come-first-served.
        max_inflight_per_engine: optional cap on concurrent chunks per engine (e.g. vLLM's
            ``max_num_seqs``); ``None`` = KV headroom is the only limit.
        chunk_align: end chunks one token past a multiple of this many tokens (the engine's KV block size) so
            that the next chunk's prefill is a single token (see :func:`~seer_verl.core.divided.chunk_budget`);
            ``None`` = let the adapter use its engines' block size, 0 = off.
        lookahead: how many waiting requests one :meth:`RolloutController.next_dispatches` call may
            skip because their chunk fits on no engine, before it stops (bounds the work per call
            while avoiding head-of-line blocking by one large request).
    """

    policy: str = "seer"
    chunk_size: int = 8192
    affinity_threshold: int = 32
    starvation_bound: int | None = None
    max_inflight_per_engine: int | None = None
    lookahead: int = 16
    chunk_align: int | None = None

    def validate(self) -> SeerConfig:
        """Check every field; raise ValueError naming the key, the value and what is allowed."""
        check_policy_name(self.policy)
        if not _is_int(self.chunk_size) or self.chunk_size < 1:
            raise ValueError(f"seer.chunk_size must be an integer >= 1 (tokens per chunk); got {self.chunk_size!r}")
        if not _is_int(self.affinity_threshold) or self.affinity_threshold < 0:
            raise ValueError(
                f"seer.affinity_threshold must be an integer >= 0 (in-flight chunks); got {self.affinity_threshold!r}"
            )
        if self.starvation_bound is not None and (not _is_int(self.starvation_bound) or self.starvation_bound < 0):
            raise ValueError(
                f"seer.starvation_bound must be null (auto) or an integer >= 0 (dispatch decisions); "
                f"got {self.starvation_bound!r}"
            )
        if self.max_inflight_per_engine is not None and (
            not _is_int(self.max_inflight_per_engine) or self.max_inflight_per_engine < 1
        ):
            raise ValueError(
                f"seer.max_inflight_per_engine must be null (no cap) or an integer >= 1; "
                f"got {self.max_inflight_per_engine!r}"
            )
        if self.chunk_align is not None and (not _is_int(self.chunk_align) or self.chunk_align < 0):
            raise ValueError(
                f"seer.chunk_align must be null (engine block size), 0 (off) or an integer >= 1 (tokens); "
                f"got {self.chunk_align!r}"
            )
        if not _is_int(self.lookahead) or self.lookahead < 1:
            raise ValueError(f"seer.lookahead must be an integer >= 1; got {self.lookahead!r}")
        return self

    def effective_starvation_bound(self, num_requests: int) -> int:
        """``starvation_bound``, or its automatic value ``4 * num_requests`` when it is None."""
        return 4 * max(num_requests, 1) if self.starvation_bound is None else self.starvation_bound

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SeerConfig:
        """Build and validate from a mapping (e.g. the ``seer`` node of a Hydra config).

        Unknown keys raise ValueError naming them and the allowed keys.
        """
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise ValueError(
                f"unknown key(s) {', '.join('seer.' + str(k) for k in unknown)}; "
                f"allowed: {', '.join('seer.' + k for k in allowed)}"
            )
        return cls(**dict(values)).validate()
