"""`seer-verl bench` config validation: bad values fail before any engine starts, naming key, value, what is allowed."""

from __future__ import annotations

import pytest

from seer_verl.bench import config as bcfg
from seer_verl.bench.policies import POLICIES


def _validate(*overrides: str) -> None:
    bcfg.validate(bcfg.compose_bench_config(list(overrides)), available=tuple(POLICIES))


def test_every_core_policy_is_a_bench_arm():
    from seer_verl.core.policies import POLICIES as CORE

    assert set(CORE) <= set(POLICIES) and all(POLICIES[n].profile == "priority" for n in CORE)
    assert [n for n, arm in POLICIES.items() if arm.needs_true_lengths] == ["oracle"]


def test_defaults_are_valid_and_replay_on():
    cfg = bcfg.compose_bench_config([])
    bcfg.validate(cfg, available=tuple(POLICIES))
    assert cfg.workload.replay_seed == 0 and cfg.repeats == 1


def test_spec_friendly_preset_changes_only_temperature_and_policies():
    base = bcfg.compose_bench_config([])
    cfg = bcfg.compose_bench_config(["preset=spec_friendly"])
    bcfg.validate(cfg, available=tuple(POLICIES))
    assert cfg.workload.temperature == 0.6 and "seer_sd" in cfg.policies and "seer" in cfg.policies
    for key in ("num_prompts", "group_size", "max_tokens", "replay_seed", "seed"):
        assert cfg.workload[key] == base.workload[key], key
    assert cfg.engines == base.engines
    # the command line still wins over the preset
    assert bcfg.compose_bench_config(["preset=spec_friendly", "workload.temperature=0.8"]).workload.temperature == 0.8


@pytest.mark.parametrize("override, message", [
    ("workload.replay_seed=-1", r"workload\.replay_seed=-1 is not allowed: null \(free sampling\) or an integer"),
    ("workload.replay_seed=1.5", r"workload\.replay_seed=1\.5 is not allowed"),
    ("repeats=0", r"repeats=0 is not allowed: an integer in \[1, 50\]"),
    ("repeats=two", r"repeats='two' is not allowed"),
    ("speed_probe_tokens=-1", r"speed_probe_tokens=-1 is not allowed: an integer in \[0, 1024\] \(0 = no probe\)"),
    ("speed_probe_tokens=true", r"speed_probe_tokens=True is not allowed"),
    ("settle_max_s=-1", r"settle_max_s=-1 is not allowed: seconds in \[0, 600\] \(0 = no wait\)"),
    ("engines.keep_profiles=0", r"engines\.keep_profiles=0 is not allowed: an integer in \[1, 4\]"),
])
def test_bad_values_name_key_value_and_allowed(override, message):
    with pytest.raises(bcfg.BenchConfigError, match=message):
        _validate(override)


def test_free_sampling_is_allowed():
    _validate("workload.replay_seed=null", "repeats=3")


def test_deadline_interrupts_a_hung_call_and_is_reset_after():
    import time

    pytest.importorskip("verl")
    from seer_verl.bench.run import deadline

    t0 = time.time()
    with pytest.raises(TimeoutError, match=r"the stock rollout ran longer than timeout_s=0\.2 s"):
        with deadline(0.2, "the stock rollout"):
            time.sleep(5)
    assert time.time() - t0 < 2
    with deadline(0.2, "quick"):
        pass
    time.sleep(0.3)  # the timer was cancelled: nothing fires after the block
