"""Token identity of two rollouts of the same batch (stdlib only): which samples match token for token, and where
the others first diverge. With replayable sampling every policy must reproduce the reference's tokens; what still
differs comes from fp32 numerics (a batch of another size or a chunk's prefill computes the logits in another
order, which can flip a near-tie of the sampler's scores), and one flip changes the rest of that sample."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def first_divergence(a: Sequence[int], b: Sequence[int]) -> int | None:
    """Index of the first differing token (the shorter length when one is a prefix of the other); None if equal."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def compare(reference: Sequence[Sequence[int]], other: Sequence[Sequence[int]], keep: int = 20) -> dict[str, Any]:
    """Identity of ``other`` against ``reference`` (one token list per sample, same order)."""
    if len(reference) != len(other):
        raise ValueError(f"cannot compare rollouts of {len(reference)} and {len(other)} samples")
    div = []
    for row, (a, b) in enumerate(zip(reference, other)):
        d = first_divergence(a, b)
        if d is not None:
            div.append({"row": row, "position": d, "reference_len": len(a), "len": len(b)})
    n = len(reference)
    return {
        "requests": n,
        "identical": n - len(div),
        "share": (n - len(div)) / n if n else 1.0,
        "tokens_reference": sum(len(a) for a in reference),
        "tokens": sum(len(b) for b in other),
        "divergences": div[:keep],
    }
