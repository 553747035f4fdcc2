"""The draft budget's margin, learned from what its drafts really saved (speculation that never costs).

:func:`~seer_verl.core.draft_budget.select_drafts` drafts when its best prefix is predicted to cut the step's time
per generated token by more than ``min_gain``. The prediction rests on estimates: each candidate token's calibrated
acceptance and the engine's fitted step time. Where they are optimistic (the most promising of many noisy
estimates is an overstated one; a cost the linear step model does not see, such as per-row sampling work), the
budget drafts where speculation loses time, and it cannot tell from its own inputs.

:class:`DraftMargin` closes the loop. For every drafted step it compares the saving the budget predicted with the
saving the step realised once verified::

    realised = 1 - (seconds / (B + accepted)) / (T(B, B) / B)

(the step's time per generated token against the fitted time per token of the same step without drafts), and keeps
the mean of ``predicted - realised`` (shrunk towards 0 by ``prior_steps`` pseudo-steps). The budget then drafts
only where the predicted saving exceeds ``min_gain`` plus that optimism: a budget whose predictions hold keeps its
margin; one that overstates by 8% raises its bar by 8% and drafts only where it is most confident (the tail's lone
requests, confident group drafts). The evidence fades with engine steps, drafted or not (``halflife``), so a bar
raised by a bad phase comes down again and the budget tries again: with the defaults, a budget that is always
wrong drafts on about 2% of the steps.

Stdlib only; the engines' proposer feeds it (:mod:`seer_verl.speculative.proposer`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["BandedDraftMargin", "DraftMargin", "realised_saving"]


def realised_saving(num_seqs: int, accepted: int, seconds: float, base_step_s: float) -> float:
    """Fraction of the time per generated token a verified step saved against ``base_step_s`` (the same batch's
    step without drafts): ``num_seqs`` rows made ``num_seqs + accepted`` tokens in ``seconds``."""
    if num_seqs < 1 or accepted < 0 or not seconds > 0 or not base_step_s > 0:
        raise ValueError(f"realised_saving needs num_seqs >= 1, accepted >= 0 and positive times; got "
                         f"num_seqs={num_seqs}, accepted={accepted}, seconds={seconds}, base_step_s={base_step_s}")
    return 1.0 - (seconds / (num_seqs + accepted)) / (base_step_s / num_seqs)


@dataclass
class DraftMargin:
    """Args:
        min_gain: the margin while the budget's predictions hold (``seer.spec.min_gain``).
        halflife: engine steps (:meth:`tick`) after which an outcome weighs half.
        prior_steps: pseudo-steps of zero optimism (the bar moves only as far as the evidence says).
        max_margin: the highest bar.
        clip: one step's ``predicted - realised`` is clipped to ``[-clip, clip]`` (a step stalled by the host is
            not evidence about the budget beyond that).
    """

    min_gain: float = 0.05
    halflife: float = 1000.0
    prior_steps: float = 30.0
    max_margin: float = 0.95
    clip: float = 1.0
    _sum: float = 0.0
    _weight: float = 0.0
    recorded: int = 0

    def __post_init__(self) -> None:
        checks = {"min_gain": 0.0 <= self.min_gain < 1.0, "halflife": self.halflife > 0,
                  "prior_steps": self.prior_steps >= 0, "max_margin": self.min_gain <= self.max_margin < 1.0,
                  "clip": self.clip > 0}
        for key, ok in checks.items():
            if not ok:
                raise ValueError(f"DraftMargin: {key}={getattr(self, key)!r} is out of range (0 <= min_gain <= "
                                 f"max_margin < 1, halflife > 0, prior_steps >= 0, clip > 0)")
        self._decay = 0.5 ** (1.0 / self.halflife)

    def tick(self) -> None:
        """One engine step went by (drafted or not): older evidence fades."""
        self._sum *= self._decay
        self._weight *= self._decay

    def record(self, predicted: float, realised: float) -> None:
        """One drafted step: the saving the budget predicted and the one it realised (fractions)."""
        if not (math.isfinite(predicted) and math.isfinite(realised)):
            return
        self._sum += min(self.clip, max(-self.clip, predicted - realised))
        self._weight += 1.0
        self.recorded += 1

    @property
    def optimism(self) -> float:
        """Decayed mean of ``predicted - realised`` over the drafted steps, shrunk towards 0 by the prior."""
        return self.optimism_towards(0.0)

    def optimism_towards(self, prior_mean: float) -> float:
        """The decayed mean shrunk towards ``prior_mean`` (instead of 0) by the prior's pseudo-steps."""
        w = self._weight + self.prior_steps
        return (self._sum + self.prior_steps * prior_mean) / w if w > 0 else prior_mean

    def bar(self, optimism: float) -> float:
        """``min_gain`` plus ``optimism`` where positive, capped at ``max_margin``."""
        return min(self.max_margin, self.min_gain + max(0.0, optimism))

    @property
    def margin(self) -> float:
        """The ``min_gain`` the budget should use now: ``min_gain`` plus the optimism (never below ``min_gain``)."""
        return self.bar(self.optimism)


@dataclass
class BandedDraftMargin:
    """One :class:`DraftMargin` per batch-size band: the budget's optimism depends on the batch (at 12+ rows a
    verified draft token cost the CPU engines 2x what the linear step model said; at 1-3 rows the model holds), so
    one engine-wide bar learnt in the bulk would also stop the tail's lone requests from drafting, where
    speculation pays most. Band ``k`` holds the steps with ``2**k <= rows < 2**(k+1)``; the last band holds
    everything above. A band's optimism is its own evidence shrunk towards the engine-wide optimism (all bands'
    drafted steps) by ``prior_steps``: a band with few drafted steps of its own drafts against the engine's bar
    (at T=1.0, where every band's drafts lose, the bands learn as fast as one margin), one with many against its
    own (the tail, whose drafts pay).

    Args:
        bands: number of bands (``1`` = one engine-wide margin).
        the rest: as :class:`DraftMargin`, the same for every band.
    """

    min_gain: float = 0.05
    bands: int = 5
    halflife: float = 1000.0
    prior_steps: float = 30.0
    max_margin: float = 0.95
    clip: float = 1.0

    def __post_init__(self) -> None:
        if not (isinstance(self.bands, int) and 1 <= self.bands <= 16):
            raise ValueError(f"BandedDraftMargin: bands={self.bands!r} must be an integer in 1..16")
        def new() -> DraftMargin:
            return DraftMargin(self.min_gain, self.halflife, self.prior_steps, self.max_margin, self.clip)

        self._bands = [new() for _ in range(self.bands)]
        self._pooled = new()

    def band(self, rows: int) -> int:
        """The band of a step with ``rows`` running requests (``rows >= 1``)."""
        return min(self.bands - 1, max(0, int(rows).bit_length() - 1))

    def tick(self) -> None:
        for m in (*self._bands, self._pooled):
            m.tick()

    def record(self, rows: int, predicted: float, realised: float) -> None:
        self._bands[self.band(rows)].record(predicted, realised)
        self._pooled.record(predicted, realised)

    def _optimism(self, k: int) -> float:
        if self.bands == 1:
            return self._pooled.optimism
        return self._bands[k].optimism_towards(self._pooled.optimism)

    def margin(self, rows: int) -> float:
        """The bar a step with ``rows`` running requests drafts against."""
        return self._pooled.bar(self._optimism(self.band(rows)))

    @property
    def recorded(self) -> int:
        return self._pooled.recorded

    def table(self) -> list[dict]:
        """Per band: the smallest batch in it, its margin, optimism and drafted steps recorded."""
        return [{"rows_from": 1 << k, "margin": m.bar(self._optimism(k)), "optimism": self._optimism(k),
                 "recorded": m.recorded} for k, m in enumerate(self._bands)]
