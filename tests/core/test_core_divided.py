"""Unit tests of seer_verl.core.divided (chunk budgets and chunk accounting)."""

from __future__ import annotations

import pytest

from seer_verl.core import ChunkError, RolloutRequest, apply_chunk, auto_chunk_size, chunk_budget


def make(max_tokens=10, generated=0):
    r = RolloutRequest(req_id=4, group_id=0, index_in_group=0, prompt_len=3, max_tokens=max_tokens)
    r.token_ids.extend(range(generated))
    r.log_probs.extend([-1.0] * generated)
    return r


@pytest.mark.parametrize(
    "max_tokens, generated, chunk_size, expect",
    [(10, 0, 4, 4), (10, 8, 4, 2), (10, 6, 4, 4), (10, 0, 100, 10), (1, 0, 1, 1)],
)
def test_chunk_budget_is_min_of_chunk_size_and_remaining(max_tokens, generated, chunk_size, expect):
    assert chunk_budget(make(max_tokens, generated), chunk_size) == expect


def test_chunk_budget_rejects_finished_request_and_bad_chunk_size():
    r = make()
    r.finished, r.finish_reason = True, "stop"
    with pytest.raises(ChunkError, match="finished"):
        chunk_budget(r, 4)
    with pytest.raises(ValueError, match="chunk_size"):
        chunk_budget(make(), 0)


def test_full_chunk_without_stop_continues():
    r = make(10)
    assert apply_chunk(r, [1, 2, 3, 4], [-0.1, -0.2, -0.3, -0.4], False, 4) is False
    assert r.token_ids == [1, 2, 3, 4] and r.log_probs == [-0.1, -0.2, -0.3, -0.4]
    assert (r.chunks, r.finished, r.finish_reason) == (1, False, None)


def test_early_stop_finishes_with_stop():
    r = make(10)
    assert apply_chunk(r, [1, 2], [-0.1, -0.2], True, 4) is True
    assert (r.finished, r.finish_reason, r.generated) == (True, "stop", 2)


def test_stop_exactly_at_budget_and_at_max_tokens_is_stop():
    r = make(4)
    apply_chunk(r, [1, 2, 3, 4], [0.0] * 4, True, 4)
    assert r.finish_reason == "stop"


def test_reaching_max_tokens_without_stop_is_length():
    r = make(6, generated=4)
    assert apply_chunk(r, [8, 9], [0.0, 0.0], False, 2) is True
    assert (r.finish_reason, r.generated, r.remaining) == ("length", 6, 0)


@pytest.mark.parametrize(
    "tokens, logps, stopped, budget, message",
    [
        ([1, 2, 3, 4, 5], [0.0] * 5, False, 4, "returned 5 tokens for a chunk budget of 4"),
        ([1, 2], [0.0], True, 4, "1 log-probs for 2 tokens"),
        ([1, 2], [0.0, 0.0], False, 4, "without stopping"),
        ([1], [0.0], False, 11, "outside 1..10"),
        ([], [], True, 0, "outside 1..10"),
    ],
)
def test_bad_chunk_results_raise_and_leave_the_request_unchanged(tokens, logps, stopped, budget, message):
    r = make(10)
    with pytest.raises(ChunkError, match=message):
        apply_chunk(r, tokens, logps, stopped, budget)
    assert (r.token_ids, r.log_probs, r.chunks, r.finished) == ([], [], 0, False)


def test_chunk_for_finished_request_raises():
    r = make(10)
    apply_chunk(r, [1], [0.0], True, 4)
    with pytest.raises(ChunkError, match="already finished"):
        apply_chunk(r, [2], [0.0], True, 4)
    assert r.token_ids == [1]


def _at(prompt_len: int, generated: int, max_tokens: int) -> RolloutRequest:
    r = RolloutRequest(req_id=0, group_id=0, index_in_group=0, prompt_len=prompt_len, max_tokens=max_tokens)
    r.token_ids.extend([5] * generated)
    r.log_probs.extend([-1.0] * generated)
    return r


def test_aligned_budget_ends_one_token_past_a_block() -> None:
    # context 125 (prompt only): 125 + 128 = 253 -> shortened to end at 129 = 1 * 128 + 1
    r = _at(125, 0, 1024)
    b = chunk_budget(r, 128, align=128)
    assert b == 4 and (125 + b) % 128 == 1
    # from an aligned context (k * 128 + 1) a full chunk of 128 stays aligned
    r = _at(125, 4, 1024)
    assert chunk_budget(r, 128, align=128) == 128
    # a 256 chunk from context 300 ends at 513 (= 4 * 128 + 1): 213 tokens
    assert chunk_budget(_at(100, 200, 1024), 256, align=128) == 213


def test_aligned_budget_never_exceeds_the_plain_budget() -> None:
    for prompt in (1, 64, 127, 128, 129, 300):
        for gen in (0, 1, 100, 500):
            for cs in (1, 16, 100, 128, 300):
                for align in (0, 1, 32, 128):
                    r = _at(prompt, gen, 700)
                    plain = chunk_budget(r, cs)
                    b = chunk_budget(r, cs, align)
                    assert 1 <= b <= plain
                    if align > 1 and plain < r.remaining and b != plain:
                        assert (prompt + gen + b) % align == 1 and plain - b < align


def test_last_chunk_is_not_shortened() -> None:
    r = _at(125, 900, 1000)  # 100 tokens left < chunk: finish the request in this chunk
    assert chunk_budget(r, 128, align=128) == 100


@pytest.mark.parametrize(
    "kv, response, expect",
    [
        # the simulated CPU shapes' best sizes (docs/kv_pressure.md): ~1/45 of an engine's KV tokens
        (1408, 1024, 32), (2912, 1024, 64), (5632, 1024, 128), (11264, 4096, 256),
        # at most 1/8 of the response length (a power of two): 512 -> 64, 40,960 -> 4,096
        (5632, 512, 64), (1_157_407, 65536, 8192), (1_214_599, 40960, 4096), (11_270_491, 98304, 8192),
        # simulated Moonlight engines at gpu_memory_utilization 0.5 (verl's regime without a KV pool): the KV binds
        (128_600, 65536, 2048),
        # at least 16 tokens
        (100, 1024, 16), (5632, 20, 16), (1, 1, 16),
        # the KV share rounds to the nearest power of two: 4,073 tokens / 45 = 90.5 is the 64/128 boundary
        (4050, 1024, 64), (4100, 1024, 128),
    ],
)
def test_auto_chunk_size(kv, response, expect):
    assert auto_chunk_size(kv, response) == expect


def test_auto_chunk_size_is_a_power_of_two_monotone_in_kv_and_response():
    kvs = [2**k + d for k in range(4, 24) for d in (-1, 0, 1)]
    for response in (1, 16, 100, 512, 1000, 8192, 65536):
        sizes = [auto_chunk_size(kv, response) for kv in kvs]
        assert all(s & (s - 1) == 0 and s >= 16 for s in sizes)
        assert all(s <= max(16, response // 8) for s in sizes)
        assert sizes == sorted(sizes)
    for kv in (1000, 5632, 10**6):
        sizes = [auto_chunk_size(kv, r) for r in range(1, 20000, 37)]
        assert sizes == sorted(sizes)


def test_auto_chunk_size_rejects_empty_engines_and_responses():
    with pytest.raises(ValueError, match="kv_capacity_tokens >= 1 and response_length >= 1; got 0, 512"):
        auto_chunk_size(0, 512)
    with pytest.raises(ValueError, match="got 5632, 0"):
        auto_chunk_size(5632, 0)


def test_auto_chunk_size_min_tokens_is_a_floor_over_both_rules():
    assert auto_chunk_size(2912, 512) == 64
    assert auto_chunk_size(2912, 512, min_tokens=128) == 128  # above the KV share and the response cap
    assert auto_chunk_size(2912, 512, min_tokens=16) == 64
    assert auto_chunk_size(128_000, 65_536, min_tokens=16) == 2048
