"""SeerConfig validation of the reliability knobs and of a config against the rollout it drives."""

from __future__ import annotations

import pytest

from seer_verl.core import SeerConfig


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("chunk_timeout_s", 0, r"seer\.chunk_timeout_s must be null \(auto: 120 \+ 2 x chunk_size\) or a number "
                               r"of seconds > 0; got 0"),
        ("chunk_timeout_s", -3.5, r"seer\.chunk_timeout_s .*got -3\.5"),
        ("chunk_timeout_s", "10", r"seer\.chunk_timeout_s .*got '10'"),
        ("chunk_timeout_s", float("inf"), r"seer\.chunk_timeout_s .*got inf"),
        ("chunk_timeout_s", True, r"seer\.chunk_timeout_s .*got True"),
        ("health_timeout_s", 0, r"seer\.health_timeout_s must be a number of seconds > 0; got 0"),
        ("health_timeout_s", None, r"seer\.health_timeout_s .*got None"),
        ("admission_wait_s", 0, r"seer\.admission_wait_s must be a number of seconds in \(0, 3600\]; got 0"),
        ("admission_wait_s", 1e9, r"seer\.admission_wait_s .*got 1000000000\.0"),
        ("chunk_align", -1, r"seer\.chunk_align must be null .*got -1"),
        ("lookahead", 1.5, r"seer\.lookahead must be an integer >= 1; got 1\.5"),
        ("affinity_threshold", "32", r"seer\.affinity_threshold .*got '32'"),
        ("starvation_bound", 2.0, r"seer\.starvation_bound .*got 2\.0"),
        ("max_inflight_per_engine", True, r"seer\.max_inflight_per_engine .*got True"),
        ("policy", None, r"seer\.policy must be one of 'divided', 'seer', 'oracle'; got None"),
        ("chunk_size", 0, r"seer\.chunk_size must be null \(auto: ~1/45 of an engine's KV tokens, at most 1/8 of the "
                          r"response length\) or an integer >= 1 \(tokens per chunk\); got 0"),
        ("chunk_size", "auto", r"seer\.chunk_size .*got 'auto'"),
    ],
)
def test_bad_values_name_key_value_and_allowed(field, value, message):
    with pytest.raises(ValueError, match=message):
        SeerConfig(**{field: value}).validate()


def test_chunk_timeout_auto_scales_with_chunk_size_and_explicit_value_wins():
    assert SeerConfig(chunk_size=128).effective_chunk_timeout_s() == 120 + 2 * 128
    assert SeerConfig(chunk_size=8192).effective_chunk_timeout_s() == 120 + 2 * 8192
    assert SeerConfig(chunk_size=128, chunk_timeout_s=7.5).validate().effective_chunk_timeout_s() == 7.5
    assert SeerConfig.from_mapping({"chunk_timeout_s": 30, "health_timeout_s": 2.5}).health_timeout_s == 2.5


def test_null_chunk_size_is_auto_and_its_timeout_needs_the_resolved_size():
    auto = SeerConfig(chunk_size=None).validate()
    assert auto.resolved_chunk_size(5632, 1024) == 128 and auto.resolved_chunk_size(5632, 512) == 64
    assert SeerConfig(chunk_size=300).resolved_chunk_size(5632, 1024) == 300
    assert auto.effective_chunk_timeout_s(128) == 120 + 2 * 128
    with pytest.raises(ValueError, match="seer.chunk_size is null"):
        auto.effective_chunk_timeout_s()
    assert SeerConfig(chunk_size=None, chunk_timeout_s=9).effective_chunk_timeout_s() == 9


def test_the_automatic_reserve_floors_the_automatic_chunk_size_at_one_kv_block():
    # 2,912-token engines with 128-token blocks and 512-token responses: the KV share gives 64; with kv_reserve auto
    # (the default) a chunk is at least one block, under the paper's fixed reserve it stays 64
    assert SeerConfig(chunk_size=None).resolved_chunk_size(2912, 512, 128) == 128
    assert SeerConfig(chunk_size=None, kv_reserve=1.0).resolved_chunk_size(2912, 512, 128) == 64
    assert SeerConfig(chunk_size=None).resolved_chunk_size(2912, 512, 16) == 64  # small blocks: the KV share rule
    assert SeerConfig(chunk_size=48).resolved_chunk_size(2912, 512, 128) == 48  # an explicit size is kept


ROLLOUT = dict(n=4, prompt_length=256, response_length=1024, max_model_len=1280, max_num_seqs=64)
KEYS = {"n": "rollout.n", "prompt_length": "rollout.prompt_length", "response_length": "rollout.response_length",
        "max_model_len": "rollout.max_model_len", "max_num_seqs": "rollout.max_num_seqs", "kv": "rollout.kv"}


def check(cfg=None, **over):
    return (cfg or SeerConfig(chunk_size=128)).check_rollout(**{**ROLLOUT, **over}, keys=KEYS)


def test_a_sound_rollout_passes_without_warnings():
    assert check(engines=[(5808, 16), (5808, 16)]) == []


@pytest.mark.parametrize(
    "over, message",
    [
        ({"n": 0}, r"rollout\.n must be an integer >= 1; got 0"),
        ({"n": None}, r"rollout\.n must be an integer >= 1; got None"),
        ({"prompt_length": 0}, r"rollout\.prompt_length must be an integer >= 1; got 0"),
        ({"response_length": 2.5}, r"rollout\.response_length must be an integer >= 1; got 2\.5"),
        ({"max_model_len": 256}, r"rollout\.max_model_len=256 leaves no room to generate after a prompt of "
                                 r"rollout\.prompt_length=256 tokens; allowed: > 256 \(at most 1280 is used\)"),
        ({"max_model_len": "big"}, r"rollout\.max_model_len must be an integer >= 2 \(tokens\); got 'big'"),
        ({"max_num_seqs": 0}, r"rollout\.max_num_seqs must be an integer >= 1; got 0"),
        ({"engines": [(1000, 16), (1279, 16)]},
         r"no rollout engine's KV cache holds the longest sequence of 1280 tokens \(prompt 256 \+ response 1024, "
         r"capped by rollout\.max_model_len=1280\); engine 0: 1000 tokens, engine 1: 1279 tokens.*raise rollout\.kv"),
    ],
)
def test_rollout_errors_name_key_value_and_allowed(over, message):
    with pytest.raises(ValueError, match=message):
        check(**over)


def test_max_inflight_above_max_num_seqs_is_an_error():
    with pytest.raises(ValueError, match=r"seer\.max_inflight_per_engine=80 exceeds rollout\.max_num_seqs=64.*"
                                         r"allowed: null \(= 64\) or 1\.\.64"):
        check(SeerConfig(max_inflight_per_engine=80))
    assert check(SeerConfig(chunk_size=128, max_inflight_per_engine=64)) == []


def test_kv_check_uses_block_rounding_and_max_model_len_cap():
    # 1280 tokens in blocks of 16 = 1280; 1279 capacity fails, 1280 fits
    assert check(engines=[(1280, 16)]) == []
    # max_model_len below prompt + response caps the longest sequence
    assert check(max_model_len=600, engines=[(608, 16)]) == []
    with pytest.raises(ValueError, match="longest sequence of 600 tokens"):
        check(max_model_len=600, engines=[(599, 1)])


def test_warnings_for_single_chunk_rollouts_lone_samples_and_small_engines():
    w = check(SeerConfig(chunk_size=2048), n=1, engines=[(5808, 16), (512, 16)])
    assert any("seer.chunk_size=2048 >= rollout.response_length=1024" in x for x in w)
    assert any("seer.policy=seer with rollout.n=1" in x for x in w)
    assert any("engine(s) [1] cannot hold a 1280-token sequence" in x for x in w)
    assert check(SeerConfig(policy="divided", chunk_size=128), n=1) == []
