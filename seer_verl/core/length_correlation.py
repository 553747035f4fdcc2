"""How much a group's response lengths have in common: the signal Seer's context-aware scheduling learns from.

Seer ranks a group's waiting samples by the lengths of its finished siblings (paper §2.3, Fig. 4: "responses in
the same group are similar"). That pays only where a sample's length depends on its prompt. The intraclass
correlation of log lengths says how much: 1 when siblings have the same length, 0 when a sample's group tells
nothing about its length (every difference is within groups). A permutation test (shuffle the samples over groups of
the same sizes) gives the chance of an ICC this high with no group effect at all.

Stdlib only; the bench, the simulator and the rollout service report it per batch.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["GroupLengthCorrelation", "group_length_correlation"]


@dataclass(frozen=True)
class GroupLengthCorrelation:
    """Within-group similarity of response lengths in one batch.

    Attributes:
        icc: one-way intraclass correlation ICC(1) of ``log(1 + length)`` (negative values mean siblings differ more
            than random samples would; 0 = no group effect).
        p_value: permutation p-value of ``icc`` against no group effect, or None when no permutations were run.
        groups: groups with at least two samples (the only ones that count).
        samples: samples in those groups.
    """

    icc: float
    p_value: float | None
    groups: int
    samples: int


def _icc(values: list[float], sizes: list[int]) -> float:
    """ICC(1) from the one-way ANOVA of ``values`` split into consecutive groups of ``sizes`` (unequal sizes allowed)."""
    n, k = len(values), len(sizes)
    grand = sum(values) / n
    ssb = ssw = 0.0
    i = 0
    for m in sizes:
        grp = values[i:i + m]
        i += m
        mean = sum(grp) / m
        ssb += m * (mean - grand) ** 2
        ssw += sum((v - mean) ** 2 for v in grp)
    msb = ssb / (k - 1)
    msw = ssw / (n - k)
    n0 = (n - sum(m * m for m in sizes) / n) / (k - 1)  # the mean group size, adjusted for unequal sizes
    denom = msb + (n0 - 1) * msw
    return 0.0 if denom <= 0 else (msb - msw) / denom


def group_length_correlation(lengths_by_group: Mapping[Any, Sequence[int]], permutations: int = 1000,
                             seed: int = 0) -> GroupLengthCorrelation | None:
    """Intraclass correlation of log lengths over the groups of one batch, and its permutation p-value.

    Groups with fewer than two samples are left out. Returns None when fewer than two groups remain, or when every
    length is the same (nothing to correlate). ``permutations=0`` skips the test (``p_value`` None); the p-value is
    ``(1 + #shuffles with an ICC at least as high) / (1 + permutations)``, seeded, so a report is reproducible.

    Raises:
        ValueError: a negative length or a negative ``permutations``.
    """
    if permutations < 0:
        raise ValueError(f"permutations must be >= 0, got {permutations}")
    groups = [list(v) for v in lengths_by_group.values() if len(v) >= 2]
    for g in groups:
        for length in g:
            if length < 0:
                raise ValueError(f"lengths must be >= 0, got {length}")
    if len(groups) < 2:
        return None
    sizes = [len(g) for g in groups]
    values = [math.log1p(length) for g in groups for length in g]
    if max(values) == min(values):
        return None
    icc = _icc(values, sizes)
    p = None
    if permutations:
        rng = random.Random(seed)
        shuffled = list(values)
        hits = 0
        for _ in range(permutations):
            rng.shuffle(shuffled)
            hits += _icc(shuffled, sizes) >= icc - 1e-12
        p = (1 + hits) / (1 + permutations)
    return GroupLengthCorrelation(icc=icc, p_value=p, groups=len(groups), samples=len(values))
