"""The record an engine's drafter runs with: :class:`DrafterSettings`.

Two classes, two concepts: :class:`seer_verl.speculative.config.SpecConfig` is what a user writes (``seer.spec.*``,
validated before any engine starts); :class:`DrafterSettings` is what each engine's
:class:`~seer_verl.speculative.proposer.GroupSuffixProposer` is configured with, sent over the engines' RPC as a plain
dict (:meth:`DrafterSettings.as_dict`, ``seer_sd_configure``). ``SpecConfig.engine_settings()`` derives one from the
other; the engine adds two modes a user never sets (``off``: a freshly started or reset engine, ``profile``: step-time
profiling).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["DRAFTER_MODES", "USER_MODES", "DrafterSettings"]

#: ``seer.spec.mode``: ``adaptive`` (marginal-benefit budget) or ``fixed`` (every request drafts ``fixed_gamma``).
USER_MODES = ("adaptive", "fixed")
#: The user's modes plus two only an engine has: ``off``: no drafts (an engine until the Seer service configures it,
#: so stock traffic on these engines drafts nothing); ``profile``: every request gets ``fixed_gamma`` dummy draft
#: tokens (its last token repeated), so verification steps of a chosen shape can be timed
#: (``scripts/profile_step_time.py cpu-sd``).
DRAFTER_MODES = (*USER_MODES, "off", "profile")


@dataclass
class DrafterSettings:
    """Attributes: as :class:`~seer_verl.speculative.config.SpecConfig` (``mode`` may also be ``off`` /
    ``profile``), except ``fixed_gamma`` (always an int here) and ``step_time``: the step-time model's fields
    (``c0``, ``c_seq``, ``c_tok``, ``c_kv`` [+ ``c_spec``]) rather than the path of its JSON, or ``None``."""

    mode: str = "off"
    gamma_max: int = 8
    fixed_gamma: int = 8
    lam: float = 2.0
    top_k: int = 1
    min_token_prob: float = 0.1
    step_time: dict[str, float] | None = None
    group_ttl_s: float = 900.0
    engine_seqs: int = 0
    min_gain: float = 0.0
    learn_margin: bool = False
    margin_bands: int = 1

    @classmethod
    def from_dict(cls, d: dict[str, Any], base: DrafterSettings | None = None) -> DrafterSettings:
        """``d`` over ``base`` (default: the defaults); unknown keys and modes are errors naming what is allowed."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"drafter settings: unknown key(s) {unknown}; allowed: {known}")
        s = cls(**{**(base.as_dict() if base is not None else {}), **d})
        if s.mode not in DRAFTER_MODES:
            raise ValueError(f"drafter settings: mode={s.mode!r} is not allowed: one of {list(DRAFTER_MODES)}")
        return s

    def as_dict(self) -> dict[str, Any]:
        """The wire form (``seer_sd_configure``'s argument)."""
        return asdict(self)
