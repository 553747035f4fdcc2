"""Two-sample losslessness test (seer_verl.speculative_tools.lossless) on synthetic samples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from seer_verl.speculative_tools.lossless import (
    chi2_homogeneity,
    chi2_sf,
    from_records,
    ks_2samp,
    mann_whitney_u,
    two_sample_test,
)


@pytest.mark.parametrize("x, df, p", [
    (3.841458820694124, 1, 0.05), (11.070497693516351, 5, 0.05), (124.34211340400407, 100, 0.05),
    (6.634896601021214, 1, 0.01), (0.0, 3, 1.0), (2.0, 2, math.exp(-1.0)),
])
def test_chi2_sf_known_values(x, df, p):
    assert chi2_sf(x, df) == pytest.approx(p, rel=1e-6, abs=1e-12)


def test_chi2_sf_tail_matches_numerical_integration():
    df, x = 7, 40.0
    k = df / 2
    grid = np.linspace(x, 400.0, 400_001)
    pdf = np.exp((k - 1) * np.log(grid) - grid / 2 - k * math.log(2) - math.lgamma(k))
    assert chi2_sf(x, df) == pytest.approx(float(np.trapezoid(pdf, grid)), rel=1e-4)


def test_chi2_homogeneity_table():
    stat, df = chi2_homogeneity(np.array([[10, 20, 0], [20, 10, 0]]))
    assert df == 1
    assert stat == pytest.approx(60 * (10 * 10 - 20 * 20) ** 2 / (30 * 30 * 30 * 30))


def test_mann_whitney_known_value():
    r = mann_whitney_u([1, 2, 3], [4, 5, 6])
    assert r["U"] == 0
    assert r["p"] == pytest.approx(2 * 0.5 * math.erfc(4 / math.sqrt(21 / 4) / math.sqrt(2)), rel=1e-9)
    assert mann_whitney_u([1, 1, 1], [1, 1, 1])["p"] == 1.0


def test_ks_2samp():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=400), rng.normal(size=400)
    assert ks_2samp(a, b)["p"] > 0.05
    assert ks_2samp(a, b + 0.5)["p"] < 1e-6
    assert ks_2samp([1, 2, 3], [1, 2, 3])["D"] == 0.0


def _sample(rng, probs, n, max_len=60, stop=0.03):
    """Responses from a first-order Markov chain over a small vocabulary, geometric lengths."""
    V = probs.shape[0]
    out, lps = [], []
    for _ in range(n):
        t, seq, lp = 0, [], []
        for _ in range(max_len):
            t = int(rng.choice(V, p=probs[t]))
            seq.append(t)
            lp.append(math.log(probs[seq[-2] if len(seq) > 1 else 0, t]))
            if rng.random() < stop:
                break
        out.append(seq)
        lps.append(float(np.mean(lp)))
    return out, lps


def _chain(rng, V=12):
    p = rng.dirichlet(np.ones(V) * 0.7, size=V)
    return p


def _sets(seed, shift=0.0, prompts=8, n=64):
    rng = np.random.default_rng(seed)
    on, off, lon, loff = {}, {}, {}, {}
    for k in range(prompts):
        p = _chain(np.random.default_rng(1000 + k))
        q = p.copy()
        if shift:
            q[:, 0] += shift  # SD-on favours token 0 a little
            q /= q.sum(axis=1, keepdims=True)
        off[k], loff[k] = _sample(rng, p, n)
        on[k], lon[k] = _sample(rng, q, n)
    return on, off, lon, loff


def test_same_distribution_passes():
    on, off, lon, loff = _sets(1)
    r = two_sample_test(on, off, on_logprobs=lon, off_logprobs=loff, positions=16)
    assert r["passed"]
    assert r["overall_p"] > 0.05
    assert r["balanced"] and r["prompts"] == 8 and r["n_on"] == r["n_off"] == 512
    assert r["token_chi2"]["positions_tested"] == 16


def test_shifted_distribution_fails():
    on, off, lon, loff = _sets(2, shift=0.3)
    r = two_sample_test(on, off, on_logprobs=lon, off_logprobs=loff, positions=16)
    assert not r["passed"]
    assert r["token_chi2"]["p"] < 1e-6
    # a smaller shift (token 0 about 0.1 more likely everywhere) is still caught at alpha 0.01
    on, off, lon, loff = _sets(2, shift=0.15)
    r = two_sample_test(on, off, on_logprobs=lon, off_logprobs=loff, positions=16)
    assert not r["passed"]
    assert r["token_chi2"]["p"] < 0.01


def test_logprob_shift_alone_is_detected():
    on, off, lon, loff = _sets(3)
    lon = {k: [v - 0.3 for v in vs] for k, vs in lon.items()}
    r = two_sample_test(on, off, on_logprobs=lon, off_logprobs=loff, positions=8)
    assert r["logprob_mw"]["p"] < 1e-6 and r["logprob_ks"]["p"] < 1e-6
    assert not r["passed"]


def test_false_positive_rate_is_controlled():
    rejections = 0
    for seed in range(20):
        on, off, lon, loff = _sets(100 + seed, prompts=4, n=32)
        rejections += two_sample_test(on, off, on_logprobs=lon, off_logprobs=loff, positions=8,
                                      alpha=0.05)["passed"] is False
    assert rejections <= 3  # expected <= 1 at alpha 0.05 with Bonferroni


def test_from_records_and_no_common_prompt():
    recs = [{"prompt_index": 1, "response_ids": [1, 2], "logprobs": [-1.0, -3.0]},
            {"prompt_index": 1, "response_ids": [3], "logprobs": []}]
    resp, lps = from_records(recs)
    assert resp == {1: [[1, 2], [3]]}
    assert lps == {1: [-2.0, 0.0]}
    with pytest.raises(ValueError):
        two_sample_test({1: [[1]]}, {2: [[1]]})
