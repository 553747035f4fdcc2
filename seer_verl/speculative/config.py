"""``seer.spec.*``: knobs of adaptive grouped speculative decoding, validated before any engine starts.

Speculation needs the engines started with Seer's worker extension and vLLM's ``suffix`` method (that is what
``configs/seer_sd.yaml`` sets under ``actor_rollout_ref.rollout.engine_kwargs.vllm``);
:func:`check_engine_kwargs` says exactly what is missing when they are not.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from seer_verl.core.draft_budget import DEFAULT_MIN_GAIN
from seer_verl.speculative.settings import USER_MODES, DrafterSettings

__all__ = ["SpecConfig", "WORKER_EXTENSION", "check_engine_kwargs", "default_step_time_path"]

WORKER_EXTENSION = "seer_verl.speculative.worker_ext.SeerWorkerExtension"


def default_step_time_path() -> Path | None:
    """The step-time model of this project's reference CPU engine (SmolLM2-135M fp32, one core), shipped with the
    simulator: the fit profiled on a grouped-SD engine's own verification steps (``step_cpu_*_sd.json``,
    ``scripts/profile_step_time.py cpu-sd``) is preferred, then a plain profiled fit (``step_cpu_*.json``), then one
    derived from bench timelines (``step_cpu_*_bench.json``)."""
    try:
        d = Path(str(resources.files("seer_verl.sim") / "data"))
    except ModuleNotFoundError:
        return None
    found = sorted(d.glob("step_cpu_*.json"),
                   key=lambda p: (not p.stem.endswith("_sd"), p.stem.endswith("_bench"), p.name))
    return found[0] if found else None


@dataclass(slots=True)
class SpecConfig:
    """Attributes:
        enabled: speculate (the engines must run Seer's worker extension with ``method: suffix``).
        mode: ``adaptive`` (marginal-benefit budget, paper §5.3; draft nothing when it does not pay) or ``fixed``
            (every request drafts up to ``fixed_gamma`` tokens every step: the comparison row).
        gamma_max: most draft tokens per request per step (paper: 8); at most the engines'
            ``num_speculative_tokens``.
        fixed_gamma: draft length in ``fixed`` mode (``None`` = gamma_max).
        lam: priority factor λ >= 1 of the budget: how much more the group's probe request may draft (paper: 2).
        top_k: paths kept by multi-path drafting (1 = arctic's single path); vLLM verifies linear drafts only,
            so the path with the largest expected accepted length is sent.
        min_token_prob: drafts stop where the group tree's path probability falls below this.
        dgds: share drafts across engines through the grouped draft server (False = siblings on the same engine
            only).
        sync_interval_s: how often each engine's draft client fetches increments from the server.
        group_ttl_s: a group not touched for this long is dropped by the server and the engines (safety net; groups
            are released explicitly at the end of each batch).
        min_gain: a step drafts only when the budget predicts it cuts the time per generated token by at least
            this fraction (the margin of error of its step-time fit and acceptance calibration); 0 = any saving.
        learn_margin: raise that margin by the budget's own optimism, learnt online from every drafted step's
            predicted against realised saving (:class:`seer_verl.core.draft_margin.DraftMargin`); False = a fixed
            ``min_gain``.
        margin_bands: the learnt margin is kept per batch-size band (rows 1, 2-3, 4-7, 8-15, 16+ for 5), so the
            bulk's optimism does not stop the tail's lone requests from drafting; 1 = one margin per engine.
        engine_seqs: sequences (responses) each engine also keeps in one engine-wide tree beside the group trees,
            across groups and batches (vLLM suffix decoding's global cache, FIFO); a draft comes from whichever tree
            scores higher. 0 = group trees only.
        step_time: path of a step-time model JSON (:class:`seer_verl.core.step_time.StepTimeModel`) for the
            engines; ``None`` = the model fitted on this project's CPU engine (``scripts/profile_step_time.py``
            writes one for other hardware).
    """

    enabled: bool = False
    mode: str = "adaptive"
    gamma_max: int = 8
    fixed_gamma: int | None = None
    lam: float = 2.0
    top_k: int = 1
    min_token_prob: float = 0.1
    dgds: bool = True
    sync_interval_s: float = 0.5
    group_ttl_s: float = 900.0
    min_gain: float = DEFAULT_MIN_GAIN
    learn_margin: bool = True
    margin_bands: int = 5
    engine_seqs: int = 1024
    step_time: str | None = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> SpecConfig:
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"seer.spec: unknown key(s) {unknown}; allowed: {sorted(known)}")
        return cls(**values).validate()

    def validate(self) -> SpecConfig:
        def bad(key: str, value: Any, allowed: str) -> ValueError:
            return ValueError(f"seer.spec.{key}={value!r} is not allowed: {allowed}")

        if not isinstance(self.enabled, bool):
            raise bad("enabled", self.enabled, "true or false")
        if self.mode not in USER_MODES:
            raise bad("mode", self.mode, f"one of {list(USER_MODES)}")
        if not isinstance(self.gamma_max, int) or isinstance(self.gamma_max, bool) or not 1 <= self.gamma_max <= 32:
            raise bad("gamma_max", self.gamma_max, "an integer in 1..32 (draft tokens per request per step)")
        if self.fixed_gamma is not None and (not isinstance(self.fixed_gamma, int) or
                                             not 1 <= self.fixed_gamma <= self.gamma_max):
            raise bad("fixed_gamma", self.fixed_gamma, f"null or an integer in 1..gamma_max ({self.gamma_max})")
        if not isinstance(self.lam, (int, float)) or self.lam < 1:
            raise bad("lam", self.lam, "a number >= 1 (probe priority factor)")
        if not isinstance(self.top_k, int) or not 1 <= self.top_k <= 16:
            raise bad("top_k", self.top_k, "an integer in 1..16")
        if not isinstance(self.min_token_prob, (int, float)) or not 0 <= self.min_token_prob <= 1:
            raise bad("min_token_prob", self.min_token_prob, "a number in [0, 1]")
        if not isinstance(self.dgds, bool):
            raise bad("dgds", self.dgds, "true or false")
        if not isinstance(self.sync_interval_s, (int, float)) or not 0.01 <= self.sync_interval_s <= 60:
            raise bad("sync_interval_s", self.sync_interval_s, "seconds in [0.01, 60]")
        if not isinstance(self.group_ttl_s, (int, float)) or self.group_ttl_s <= 0:
            raise bad("group_ttl_s", self.group_ttl_s, "seconds > 0")
        if not isinstance(self.min_gain, (int, float)) or isinstance(self.min_gain, bool) or \
                not 0 <= self.min_gain < 1:
            raise bad("min_gain", self.min_gain, "a fraction in [0, 1) (0 = draft on any predicted saving)")
        if not isinstance(self.learn_margin, bool):
            raise bad("learn_margin", self.learn_margin, "true or false")
        if not isinstance(self.margin_bands, int) or isinstance(self.margin_bands, bool) or \
                not 1 <= self.margin_bands <= 16:
            raise bad("margin_bands", self.margin_bands, "an integer in 1..16 (1 = one margin per engine)")
        if not isinstance(self.engine_seqs, int) or isinstance(self.engine_seqs, bool) or \
                not 0 <= self.engine_seqs <= 1_000_000:
            raise bad("engine_seqs", self.engine_seqs, "an integer in 0..1000000 (0 = group trees only)")
        if self.step_time is not None and not Path(str(self.step_time)).expanduser().is_file():
            raise bad("step_time", self.step_time, "null or an existing step-time model JSON file")
        return self

    def step_time_model(self) -> dict[str, float]:
        path = Path(self.step_time).expanduser() if self.step_time else default_step_time_path()
        if path is None:
            raise ValueError("seer.spec.step_time is null and no packaged CPU step-time model was found; run "
                             "scripts/profile_step_time.py and set seer.spec.step_time to its JSON")
        d = json.loads(Path(path).read_text())
        out = {k: float(d[k]) for k in ("c0", "c_seq", "c_tok", "c_kv") if k in d}
        # a profile of verification steps may add a fixed cost of any step with drafts (profile_step_time cpu-sd)
        spec_cost = (d.get("meta") or {}).get("spec_step_cost_s")
        if spec_cost is not None:
            out["c_spec"] = float(spec_cost)
        return out

    def engine_settings(self) -> DrafterSettings:
        """What each engine's drafter is configured with (``seer_sd_configure`` gets its ``as_dict()``)."""
        return DrafterSettings(mode=self.mode, gamma_max=self.gamma_max, fixed_gamma=self.fixed_gamma or self.gamma_max,
                               lam=float(self.lam), top_k=self.top_k, min_token_prob=float(self.min_token_prob),
                               group_ttl_s=float(self.group_ttl_s), engine_seqs=self.engine_seqs,
                               min_gain=float(self.min_gain), learn_margin=self.learn_margin,
                               margin_bands=self.margin_bands,
                               step_time=self.step_time_model() if self.mode == "adaptive" else None)


def check_engine_kwargs(spec: SpecConfig, vllm_engine_kwargs: Mapping[str, Any] | None) -> None:
    """With ``seer.spec.enabled``, the rollout engines must be started for grouped speculation; say what is missing."""
    if not spec.enabled:
        return
    kw = dict(vllm_engine_kwargs or {})
    prefix = "actor_rollout_ref.rollout.engine_kwargs.vllm"
    if kw.get("worker_extension_cls") != WORKER_EXTENSION:
        raise ValueError(f"seer.spec.enabled=true needs {prefix}.worker_extension_cls={WORKER_EXTENSION} "
                         f"(got {kw.get('worker_extension_cls')!r}); compose configs/seer_sd.yaml")
    sc = kw.get("speculative_config")
    if isinstance(sc, str):
        sc = json.loads(sc)
    if not isinstance(sc, Mapping) or sc.get("method") != "suffix":
        raise ValueError(f"seer.spec.enabled=true needs {prefix}.speculative_config.method=suffix (got {sc!r}); "
                         "compose configs/seer_sd.yaml")
    k = sc.get("num_speculative_tokens")
    if not isinstance(k, int) or k < spec.gamma_max:
        raise ValueError(f"{prefix}.speculative_config.num_speculative_tokens={k!r} must be an integer >= "
                         f"seer.spec.gamma_max={spec.gamma_max}")
