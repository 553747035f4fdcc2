"""Replay keys, token identity and the bench's repeat statistics (pure Python; no engine)."""

from __future__ import annotations

import pytest

from seer_verl.replay.identity import compare, first_divergence
from seer_verl.replay.keys import check_replay_seed, mix, sample_key, splitmix64, token_seed


def test_keys_are_deterministic_63_bit_and_distinct():
    k = sample_key(0, -1, 5, 2)
    assert k == sample_key(0, -1, 5, 2)
    assert 0 <= k < 2**63
    keys = {sample_key(s, step, i, n) for s in (0, 1) for step in (-1, 0, 1) for i in range(20) for n in range(8)}
    assert len(keys) == 2 * 3 * 20 * 8  # every identity component matters
    seeds = {token_seed(k, p) for p in range(5000)}
    assert len(seeds) == 5000 and all(0 <= s < 2**63 for s in seeds)
    assert mix(1, 2) != mix(2, 1)  # order matters
    assert sample_key(0, 0, "uid-a", 0) == sample_key(0, 0, "uid-a", 0) != sample_key(0, 0, "uid-b", 0)


def test_splitmix64_is_the_reference_finaliser():
    # first output of the reference SplitMix64 generator seeded with 0 (Vigna)
    assert splitmix64(0) == 0xE220A8397B1DCDAF


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_bad_replay_seed_names_the_key(bad):
    with pytest.raises(ValueError, match=r"seer\.replay_seed=.*null \(free sampling\) or an integer >= 0"):
        check_replay_seed(bad)
    assert check_replay_seed(None) is None and check_replay_seed(7) == 7


def test_identity_counts_and_locates_divergences():
    ref = [[1, 2, 3], [4, 5], [6]]
    assert first_divergence([1, 2, 3], [1, 2, 3]) is None
    assert first_divergence([1, 2, 3], [1, 9, 3]) == 1
    assert first_divergence([1, 2, 3], [1, 2]) == 2
    r = compare(ref, [[1, 2, 3], [4, 7, 8], [6]])
    assert (r["identical"], r["requests"], r["tokens"], r["tokens_reference"]) == (2, 3, 7, 6)
    assert r["divergences"] == [{"row": 1, "position": 1, "reference_len": 2, "len": 3}]
    with pytest.raises(ValueError, match="3 and 2 samples"):
        compare(ref, ref[:2])
