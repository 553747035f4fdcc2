"""Within-group length correlation (core/length_correlation.py): the ICC and its permutation test."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seer_verl.core import group_length_correlation


def test_identical_siblings_give_icc_one_and_a_small_p():
    groups = {g: [10 * (g + 1)] * 4 for g in range(8)}  # every group its own length
    r = group_length_correlation(groups, permutations=500)
    assert r is not None
    assert r.icc == pytest.approx(1.0)
    assert r.p_value == pytest.approx(1 / 501)  # no shuffle reaches it
    assert (r.groups, r.samples) == (8, 32)


def test_icc_matches_the_one_way_anova_formula_by_hand():
    # two groups of two, log1p lengths a = [0, 1], b = [2, 5] (lengths e^x - 1)
    xs = [[0.0, 1.0], [2.0, 5.0]]
    groups = {i: [math.expm1(x) for x in g] for i, g in enumerate(xs)}
    # grand mean 2; group means 0.5, 3.5: SSB = 2*(1.5^2) * 2 = 9 (df 1); SSW = 0.5 + 4.5 = 5 (df 2) -> MSW 2.5
    # ICC(1) = (9 - 2.5) / (9 + (2 - 1) * 2.5) = 6.5 / 11.5
    r = group_length_correlation(groups, permutations=0)
    assert r is not None and r.p_value is None
    assert r.icc == pytest.approx(6.5 / 11.5, rel=1e-9)


def test_unequal_group_sizes_use_the_adjusted_mean_size():
    # log1p values per group, sizes 3, 2, 2: the ICC uses the size-adjusted mean group size n0
    xs = [[0.0, 0.0, 0.0], [3.0, 3.0], [1.0, 2.0]]
    groups = {i: [math.expm1(x) for x in g] for i, g in enumerate(xs)}
    vals = [x for g in xs for x in g]
    n, k, grand = len(vals), len(xs), sum(vals) / len(vals)
    msb = sum(len(g) * (sum(g) / len(g) - grand) ** 2 for g in xs) / (k - 1)
    msw = sum(sum((x - sum(g) / len(g)) ** 2 for x in g) for g in xs) / (n - k)
    n0 = (n - sum(len(g) ** 2 for g in xs) / n) / (k - 1)
    r = group_length_correlation(groups, permutations=0)
    assert r is not None
    assert r.icc == pytest.approx((msb - msw) / (msb + (n0 - 1) * msw), rel=1e-9)


def test_lengths_independent_of_groups_give_icc_near_zero_and_no_significance():
    rng = random.Random(3)
    groups = {g: [int(rng.lognormvariate(5, 0.9)) for _ in range(8)] for g in range(30)}
    r = group_length_correlation(groups, permutations=400, seed=1)
    assert r is not None
    assert abs(r.icc) < 0.1
    assert r.p_value > 0.05


def test_a_group_effect_is_found_among_noisy_siblings():
    rng = random.Random(4)
    groups = {g: [int(math.exp(4 + 0.8 * (g % 5) + rng.gauss(0, 0.5))) for _ in range(8)] for g in range(20)}
    r = group_length_correlation(groups, permutations=400, seed=1)
    assert r is not None
    assert r.icc > 0.5
    assert r.p_value < 0.01


def test_nothing_to_correlate_gives_none():
    assert group_length_correlation({0: [5, 9]}) is None                 # one group
    assert group_length_correlation({0: [5], 1: [9], 2: [3, 4]}) is None  # singletons do not count
    assert group_length_correlation({0: [7, 7], 1: [7, 7]}) is None      # every length the same


def test_bad_input_raises_naming_the_value():
    with pytest.raises(ValueError, match="lengths must be >= 0, got -1"):
        group_length_correlation({0: [1, -1], 1: [2, 3]})
    with pytest.raises(ValueError, match="permutations must be >= 0, got -2"):
        group_length_correlation({0: [1, 2], 1: [2, 3]}, permutations=-2)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 2000), min_size=2, max_size=6), min_size=2, max_size=8), st.randoms())
def test_order_of_groups_and_of_siblings_does_not_matter(groups, rnd):
    a = group_length_correlation(dict(enumerate(groups)), permutations=0)
    shuffled = [rnd.sample(g, len(g)) for g in groups]
    rnd.shuffle(shuffled)
    b = group_length_correlation(dict(enumerate(shuffled)), permutations=0)
    if a is None:
        assert b is None
    else:
        assert b is not None and b.icc == pytest.approx(a.icc, abs=1e-9)
        assert a.icc <= 1.0 + 1e-9
