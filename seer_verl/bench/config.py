"""The bench config (configs/bench.yaml), composed with Hydra and validated before anything expensive starts."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from seer_verl.paths import config_dir

class BenchConfigError(ValueError):
    """A bench setting is missing or out of range; the message names the key, the value and what is allowed."""


def compose_bench_config(overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        cfg = compose("bench", overrides=list(overrides))
    OmegaConf.resolve(cfg)
    return cfg


def _req(cond: bool, key: str, value: Any, allowed: str) -> None:
    if not cond:
        raise BenchConfigError(f"{key}={value!r} is not allowed: {allowed}")


def validate(cfg: DictConfig, available: tuple[str, ...]) -> None:
    """Raise BenchConfigError on the first bad key. ``available`` = policies implemented in this build."""
    pol = cfg.policies
    _req(OmegaConf.is_list(pol) and len(pol) > 0, "policies", pol, f"a non-empty list from {list(available)}")
    for p in pol:
        _req(p in available, "policies", p, f"one of {list(available)}")
    _req(len(set(pol)) == len(pol), "policies", list(pol), "each policy at most once")
    w, e = cfg.workload, cfg.engines
    _req(isinstance(w.num_prompts, int) and w.num_prompts >= 1, "workload.num_prompts", w.num_prompts, "an integer >= 1")
    _req(isinstance(w.group_size, int) and w.group_size >= 1, "workload.group_size", w.group_size, "an integer >= 1")
    _req(isinstance(w.max_tokens, int) and 1 <= w.max_tokens <= 32768, "workload.max_tokens", w.max_tokens,
         "an integer in [1, 32768]")
    _req(isinstance(w.temperature, (int, float)) and 0 <= w.temperature <= 2, "workload.temperature", w.temperature,
         "a number in [0, 2]")
    _req(isinstance(w.top_p, (int, float)) and 0 < w.top_p <= 1, "workload.top_p", w.top_p, "a number in (0, 1]")
    _req(isinstance(w.seed, int), "workload.seed", w.seed, "an integer")
    _req(w.replay_seed is None or (isinstance(w.replay_seed, int) and not isinstance(w.replay_seed, bool)
                                   and w.replay_seed >= 0),
         "workload.replay_seed", w.replay_seed, "null (free sampling) or an integer >= 0")
    _req(isinstance(cfg.repeats, int) and not isinstance(cfg.repeats, bool) and 1 <= cfg.repeats <= 50,
         "repeats", cfg.repeats, "an integer in [1, 50]")
    _req(isinstance(cfg.speed_probe_tokens, int) and not isinstance(cfg.speed_probe_tokens, bool)
         and 0 <= cfg.speed_probe_tokens <= 1024, "speed_probe_tokens", cfg.speed_probe_tokens,
         "an integer in [0, 1024] (0 = no probe)")
    _req(isinstance(cfg.settle_max_s, (int, float)) and not isinstance(cfg.settle_max_s, bool)
         and 0 <= cfg.settle_max_s <= 600, "settle_max_s", cfg.settle_max_s, "seconds in [0, 600] (0 = no wait)")
    _req(isinstance(e.count, int) and 1 <= e.count <= 64, "engines.count", e.count, "an integer in [1, 64]")
    _req(isinstance(e.kv_cache_gb, (int, float)) and e.kv_cache_gb > 0, "engines.kv_cache_gb", e.kv_cache_gb,
         "a positive number of GiB")
    _req(isinstance(e.max_num_seqs, int) and e.max_num_seqs >= 1, "engines.max_num_seqs", e.max_num_seqs,
         "an integer >= 1")
    _req(isinstance(e.keep_profiles, int) and not isinstance(e.keep_profiles, bool) and 1 <= e.keep_profiles <= 4,
         "engines.keep_profiles", e.keep_profiles, "an integer in [1, 4]")
    _req(isinstance(e.monitor_interval_s, (int, float)) and 0.05 <= e.monitor_interval_s <= 60,
         "engines.monitor_interval_s", e.monitor_interval_s, "seconds in [0.05, 60]")
    _req(isinstance(cfg.timeout_s, (int, float)) and cfg.timeout_s > 0, "timeout_s", cfg.timeout_s, "seconds > 0")
    _req(isinstance(cfg.verbose, bool), "verbose", cfg.verbose, "true or false")
    _req(isinstance(cfg.out, str) and cfg.out.endswith(".json"), "out", cfg.out, "a path ending in .json")
