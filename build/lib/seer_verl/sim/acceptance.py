"""Speculative acceptance model: how many tokens one verification step yields, as a function of the group context.

Grouped drafting (paper §3.4) drafts from a suffix tree holding the request's own tokens *and* its siblings'.
The more siblings have generated, the longer the drafts that match (paper Table 2: 1.70 tokens/step from
self-history only, 2.04 / 2.32 / 2.53 with 1 / 5 / 15 sibling references; our replay on SmolLM2-135M fp32,
``env_probe.md``: 1.30 -> 1.71 with 7 siblings at T=0.6, 1.13 -> 1.20 at T=1.0; all with k=8 drafts).

Model: each draft position is accepted with the same conditional probability ``p(n)`` given that the previous
ones were (geometric acceptance), where ``n`` is the number of sibling references (siblings that have generated
tokens). ``p(n)`` is solved so that ``tau(gamma_ref) = (1 - p^(gamma_ref+1)) / (1 - p)`` equals the measured
tokens/step at ``gamma_ref`` (=8), with the measured tokens/step interpolated linearly in ``log(1 + n)`` between
the anchor points and held constant beyond the last one. Per step the number of accepted drafts is a truncated
geometric random variable; the simulator draws the sum over a run of steps from a normal with the exact mean
and variance, from a seeded generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["ACCEPTANCE_CURVES", "AcceptanceModel", "solve_p"]


def _tau(p: float, gamma: int) -> float:
    if p >= 1.0:
        return gamma + 1.0
    return (1.0 - p ** (gamma + 1)) / (1.0 - p)


def solve_p(tau: float, gamma: int) -> float:
    """Conditional acceptance ``p`` with ``(1 - p^(gamma+1)) / (1 - p) = tau`` (bisection)."""
    if not 1.0 <= tau <= gamma + 1:
        raise ValueError(f"tokens/step {tau} must be in [1, {gamma + 1}] for {gamma} drafts")
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if _tau(mid, gamma) < tau:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@dataclass(slots=True)
class AcceptanceModel:
    """Tokens per verification step vs the number of sibling references ``n``.

    Attributes:
        ref_counts: anchor ``n`` values (increasing, starting at 0).
        ref_tau: measured tokens/step (accepted drafts + 1) at the anchors, with ``gamma_ref`` drafts.
        gamma_ref: draft length of the measurements.
        name: provenance.
    """

    ref_counts: tuple[int, ...]
    ref_tau: tuple[float, ...]
    gamma_ref: int = 8
    name: str = ""
    _p_cache: dict[int, float] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if len(self.ref_counts) != len(self.ref_tau) or not self.ref_counts or self.ref_counts[0] != 0:
            raise ValueError("ref_counts must start at 0 and match ref_tau in length")
        if list(self.ref_counts) != sorted(set(self.ref_counts)):
            raise ValueError("ref_counts must be strictly increasing")

    def tau_ref(self, n: int) -> float:
        xs = [math.log1p(c) for c in self.ref_counts]
        x = math.log1p(max(n, 0))
        if x >= xs[-1]:
            return self.ref_tau[-1]
        for i in range(1, len(xs)):
            if x <= xs[i]:
                w = (x - xs[i - 1]) / (xs[i] - xs[i - 1])
                return self.ref_tau[i - 1] + w * (self.ref_tau[i] - self.ref_tau[i - 1])
        return self.ref_tau[-1]

    def p(self, n: int) -> float:
        """Conditional per-position acceptance probability with ``n`` sibling references."""
        n = max(int(n), 0)
        v = self._p_cache.get(n)
        if v is None:
            v = solve_p(self.tau_ref(n), self.gamma_ref)
            self._p_cache[n] = v
        return v

    def beta(self, n: int, gamma_max: int) -> list[float]:
        """Per-position conditional acceptance probabilities ``beta[0..gamma_max-1]``."""
        return [self.p(n)] * gamma_max

    def tau(self, n: int, gamma: int) -> float:
        """Expected tokens per step with ``gamma`` drafts and ``n`` references."""
        return _tau(self.p(n), gamma)

    def var(self, n: int, gamma: int) -> float:
        """Variance of the tokens produced by one step (1 + truncated-geometric accepted drafts)."""
        p = self.p(n)
        probs = [(p**k) * ((1 - p) if k < gamma else 1.0) for k in range(gamma + 1)]
        mean = sum(k * q for k, q in enumerate(probs))
        return sum((k - mean) ** 2 * q for k, q in enumerate(probs))


_TABLE2 = ((0, 1, 5, 15), (1.70, 2.04, 2.32, 2.53))


def _scaled(scale: float, name: str) -> AcceptanceModel:
    return AcceptanceModel(_TABLE2[0], tuple(1 + (t - 1) * scale for t in _TABLE2[1]), 8, name)


#: Named curves. ``paper_qwen`` is Table 2 (Qwen2-VL-72B, linear drafting). The paper reports Seer-SD mean
#: acceptance tau = 1.89 / 2.15 / 1.77 for Moonlight / Qwen2-VL-72B / Kimi-K2 (Fig. 11); the other two tasks
#: scale Table 2's gain over 1 token by (tau_task - 1) / (2.15 - 1). ``smollm2_t06`` / ``smollm2_t10`` are our
#: offline replay (env_probe.md, SmolLM2-135M fp32, arctic suffix tree, k=8).
ACCEPTANCE_CURVES: dict[str, AcceptanceModel] = {
    "paper_qwen": AcceptanceModel(*_TABLE2, 8, "paper Table 2 (Qwen2-VL-72B)"),
    "paper_moonlight": _scaled(0.89 / 1.15, "Table 2 scaled to Moonlight's tau 1.89"),
    "paper_kimi": _scaled(0.77 / 1.15, "Table 2 scaled to Kimi-K2's tau 1.77"),
    "smollm2_t06": AcceptanceModel((0, 7), (1.30, 1.71), 8, "SmolLM2-135M replay, T=0.6"),
    "smollm2_t10": AcceptanceModel((0, 7), (1.13, 1.20), 8, "SmolLM2-135M replay, T=1.0"),
}
