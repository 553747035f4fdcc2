"""Expected acceptance of a draft token, learned online from the tree's own match statistics.

The grouped suffix tree gives every draft token a probability: the frequency with which the group's responses
continued that way (``child.count / node.count``; :class:`seer_verl.speculative.group_tree.Draft` ``probs``). On its own
that number is far from the probability that the *target model* emits the token. Replaying recorded SmolLM2
rollouts at T=1.0 with 7 siblings in the tree (``seer-verl replay calibration``), the tree's 0.5 bin (one other
sibling plus the request itself) was accepted 19% of the time and its 0.9+ bin 46%, while drafts that matched
more context were accepted more often at the same tree probability. So the draft
budget does not take the tree's probability at face value: :class:`DraftAcceptance` maps it to an acceptance
probability learned from the verification results of this engine's own earlier drafts.

Key of a draft position: (tree probability bin, match-length bucket, first position or not). Per key, the
conditional acceptance ``P(token j accepted | tokens < j accepted)`` is an exponentially decayed count with a prior
centred on the tree's own probability (optimistic, so a bin is tried before the evidence switches it off; a bin
drafted only at small batches still gets evidence there). Stdlib only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["DraftAcceptance", "acceptance_key"]

#: tree-probability bins: [0, 0.1), [0.1, 0.2), ..., [0.9, 1.0]
P_BINS = 10
#: match-length buckets: 1, 2..3, >= 4 tokens of context matched in the tree (0 = unknown)
ML_EDGES = (2, 4)


def acceptance_key(tree_prob: float, match_len: int, position: int) -> tuple[int, int, int]:
    """Calibration bin of draft position ``position`` (0-based) with conditional tree probability ``tree_prob``."""
    b = min(max(int(tree_prob * P_BINS), 0), P_BINS - 1)
    m = sum(1 for e in ML_EDGES if match_len >= e)
    return b, m, int(position > 0)


@dataclass
class DraftAcceptance:
    """Online calibration of tree probabilities into acceptance probabilities.

    Args:
        halflife: observations of a bin after which an old one weighs half (follows the rollout bulk -> tail).
        prior_weight: pseudo-observations of the prior (the tree's own probability, the bin's centre).
    """

    halflife: float = 500.0
    prior_weight: float = 8.0
    _reached: dict[tuple[int, int, int], float] = field(default_factory=dict)
    _accepted: dict[tuple[int, int, int], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.halflife <= 0 or self.prior_weight < 0:
            raise ValueError(f"halflife must be > 0 and prior_weight >= 0; got {self.halflife}, {self.prior_weight}")
        self._decay = 0.5 ** (1.0 / self.halflife)

    def conditional(self, key: tuple[int, int, int]) -> float:
        """Estimated ``P(accepted | earlier positions accepted)`` for a draft position in bin ``key``."""
        prior = (key[0] + 0.5) / P_BINS
        r = self._reached.get(key, 0.0)
        a = self._accepted.get(key, 0.0)
        return (a + self.prior_weight * prior) / (r + self.prior_weight) if r + self.prior_weight > 0 else prior

    def keys(self, probs: Sequence[float], match_len: int) -> list[tuple[int, int, int]]:
        return [acceptance_key(p, match_len, j) for j, p in enumerate(probs)]

    def cumulative(self, keys: Sequence[tuple[int, int, int]]) -> list[float]:
        """``acc[j]``: probability that draft positions ``0..j`` are all accepted (non-increasing)."""
        out, cum = [], 1.0
        for k in keys:
            cum *= self.conditional(k)
            out.append(cum)
        return out

    def record(self, keys: Sequence[tuple[int, int, int]], num_accepted: int) -> None:
        """Verification result of a draft whose positions had bins ``keys``: its first ``num_accepted`` were
        accepted. Positions after the first rejection were never decided and are not recorded."""
        for j, k in enumerate(keys):
            if j > num_accepted:
                break
            self._reached[k] = self._reached.get(k, 0.0) * self._decay + 1.0
            self._accepted[k] = self._accepted.get(k, 0.0) * self._decay + (1.0 if j < num_accepted else 0.0)

    def table(self) -> dict[str, list[float]]:
        """``{"p,ml,later": [observations, estimate]}`` for the metrics/debugging."""
        return {f"{k[0]},{k[1]},{k[2]}": [round(self._reached[k], 1), round(self.conditional(k), 3)]
                for k in sorted(self._reached)}
