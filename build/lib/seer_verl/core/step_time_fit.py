"""Online fit of an engine's step time from its own steps (the draft budget's cost model, kept honest).

The marginal-benefit draft budget (:mod:`seer_verl.core.draft_budget`) prices a draft token with the engine's
step-time model ``T(num_seqs, query_tokens)``. A model profiled elsewhere, or derived under assumptions, can be far
off on the engine at hand (on the 2-core CPU bench a draft token cost ~3.5x what the packaged model assumed, so the
budget kept drafting where speculation lost time). :class:`OnlineStepTimeFit` learns
``t = c0 + c_seq * num_seqs + c_tok * query_tokens`` from the engine's decode steps as they happen:

* a step is recorded only if it was a clean decode step (the caller says so: no prefill in it) and its duration is
  not an outlier (an idle engine between two steps is not a slow step);
* the fit is ridge-regularised towards the prior model (weight ``prior_weight`` pseudo-observations spread over
  typical batches), so with little data, or with collinear data (no drafts: ``query_tokens == num_seqs``), it stays
  at the prior, and it moves as far as the evidence says;
* observations decay (half-life ``halflife`` steps), so the fit follows the engine (e.g. load changes);
* ``spec_overhead``: a fixed cost of any step that verifies drafts (``query_tokens > num_seqs``), measured by a
  profile (``scripts/profile_step_time.py cpu-sd``), added to the prediction and taken off an observation before
  it enters the regression (so the linear part is fitted on the same footing for steps with and without drafts).

Stdlib only (a 3x3 normal-equation solve).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["OnlineStepTimeFit"]


def _solve3(a: list[list[float]], b: list[float]) -> list[float] | None:
    """Gaussian elimination with partial pivoting for a 3x3 system; None if singular."""
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for col in range(3):
        piv = max(range(col, 3), key=lambda r: abs(m[r][col]))
        if abs(m[piv][col]) < 1e-18:
            return None
        m[col], m[piv] = m[piv], m[col]
        for r in range(3):
            if r != col:
                f = m[r][col] / m[col][col]
                for c in range(col, 4):
                    m[r][c] -= f * m[col][c]
    return [m[i][3] / m[i][i] for i in range(3)]


@dataclass
class OnlineStepTimeFit:
    """Args:
        prior: ``(c0, c_seq, c_tok)`` of the prior model (KV cost folded into ``c0``).
        prior_weight: pseudo-observations the prior is worth.
        halflife: observations after which an old one weighs half.
        outlier_factor: a step longer than this many times the current prediction is not recorded.
        spec_overhead: seconds added to a step that verifies any draft token (not fitted).
    """

    prior: tuple[float, float, float]
    prior_weight: float = 20.0
    halflife: float = 2000.0
    outlier_factor: float = 5.0
    spec_overhead: float = 0.0
    _xtx: list[list[float]] = field(default_factory=lambda: [[0.0] * 3 for _ in range(3)])
    _xty: list[float] = field(default_factory=lambda: [0.0] * 3)
    n: float = 0.0
    recorded: int = 0
    skipped: int = 0

    def __post_init__(self) -> None:
        if len(self.prior) != 3 or any(not math.isfinite(c) or c < 0 for c in self.prior):
            raise ValueError(f"prior must be three finite coefficients >= 0 (c0, c_seq, c_tok); got {self.prior!r}")
        if not math.isfinite(self.spec_overhead) or self.spec_overhead < 0:
            raise ValueError(f"spec_overhead must be a finite number of seconds >= 0; got {self.spec_overhead!r}")
        self._decay = 0.5 ** (1.0 / self.halflife)
        self._coef = tuple(self.prior)

    def predict(self, num_seqs: int, query_tokens: int) -> float:
        c0, cs, ct = self._coef
        return c0 + cs * num_seqs + ct * query_tokens + (self.spec_overhead if query_tokens > num_seqs else 0.0)

    def add(self, num_seqs: int, query_tokens: int, seconds: float) -> bool:
        """Record one clean decode step; returns False if it was rejected as an outlier."""
        if num_seqs < 1 or query_tokens < num_seqs or not (seconds > 0) or \
                seconds > self.outlier_factor * max(self.predict(num_seqs, query_tokens), 1e-6):
            self.skipped += 1
            return False
        if query_tokens > num_seqs:
            seconds = max(seconds - self.spec_overhead, 1e-9)
        x = (1.0, float(num_seqs), float(query_tokens))
        for i in range(3):
            self._xty[i] = self._xty[i] * self._decay + x[i] * seconds
            for j in range(3):
                self._xtx[i][j] = self._xtx[i][j] * self._decay + x[i] * x[j]
        self.n = self.n * self._decay + 1.0
        self.recorded += 1
        if self.recorded % 16 == 0:
            self._refit()
        return True

    def _refit(self) -> None:
        # ridge towards the prior: minimise |Xc - y|^2 + w * |D (c - prior)|^2, D scaling each coefficient to the
        # size of its regressor at a typical batch (so the prior is worth ``prior_weight`` such steps)
        mean_b = self._xtx[0][1] / self._xtx[0][0] if self._xtx[0][0] > 0 else 1.0
        mean_q = self._xtx[0][2] / self._xtx[0][0] if self._xtx[0][0] > 0 else 1.0
        scale = (1.0, max(mean_b, 1.0), max(mean_q, 1.0))
        a = [row[:] for row in self._xtx]
        b = self._xty[:]
        for i in range(3):
            w = self.prior_weight * scale[i] ** 2
            a[i][i] += w
            b[i] += w * self.prior[i]
        sol = _solve3(a, b)
        if sol is not None and all(math.isfinite(v) for v in sol):
            self._coef = tuple(max(0.0, v) for v in sol)

    @property
    def coefficients(self) -> tuple[float, float, float]:
        """Current ``(c0, c_seq, c_tok)``."""
        return tuple(self._coef)
