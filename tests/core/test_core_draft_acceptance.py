"""Per-token draft selection (select_drafts) and the online calibration of tree probabilities (DraftAcceptance)."""

from __future__ import annotations

import pytest

from seer_verl.core.draft_acceptance import DraftAcceptance, acceptance_key
from seer_verl.core.draft_budget import select_drafts


def linear(c0, c_seq, c_tok):
    return lambda n, q: c0 + c_seq * n + c_tok * q


CPU = linear(0.097, 0.00147, 0.00398)  # the bench engines' online fit (2 engines sharing 2 cores)


def test_select_drafts_keeps_only_tokens_that_pay_for_their_verification():
    confident, weak = [0.8, 0.6, 0.4], [0.15, 0.02]
    # batch of 8 on the CPU engine: a query token costs ~4 ms, a generated token ~18 ms of the step -> only
    # tokens with acceptance above ~0.22 pay
    lens = select_drafts([confident] + [weak] * 7, [False] * 8, CPU)
    assert lens == [3, 0, 0, 0, 0, 0, 0, 0]
    # alone on the engine (batch 1, ~100 ms a step) even a weak first token pays (0.15 > 4 / 102), its second
    # (0.02) does not
    assert select_drafts([weak], [False], CPU) == [1]
    # a compute-bound engine (every query token costs a full step): nothing pays
    assert select_drafts([confident] * 4, [False] * 4, linear(0.0, 0.0, 0.05)) == [0, 0, 0, 0]
    # a memory-bound engine (extra query tokens are free): everything is sent
    assert select_drafts([confident, weak], [False, False], linear(0.05, 0.0, 1e-6)) == [3, 2]
    # requests without a candidate draft still share the step: a lone candidate in a batch of 8 must pay at
    # batch 8, not at batch 1
    assert select_drafts([weak], [False], CPU, batch=8) == [0]
    assert select_drafts([confident], [False], CPU, batch=8) == [3]
    with pytest.raises(ValueError, match="batch"):
        select_drafts([weak, weak], [False, False], CPU, batch=1)
    assert select_drafts([], [], CPU) == []
    assert select_drafts([[]], [True], CPU) == [0]


def test_select_drafts_minimises_time_per_generated_token():
    acc = [[0.9, 0.5, 0.3, 0.1], [0.6, 0.2], [0.25], [0.05, 0.01]]
    probe = [False] * 4
    lens = select_drafts(acc, probe, CPU)

    def time_per_token(ls):
        q = 4 + sum(ls)
        return CPU(4, q) / (4 + sum(sum(a[:m]) for a, m in zip(acc, ls)))

    best = time_per_token(lens)
    import itertools
    for ls in itertools.product(*[range(len(a) + 1) for a in acc]):  # every combination of draft lengths
        assert best <= time_per_token(list(ls)) + 1e-12


def test_select_drafts_gives_probes_the_tokens_first_and_a_fixed_cost_can_switch_it_off():
    acc = [[0.5, 0.4], [0.45, 0.4]]  # request 1 is its group's probe
    cost = linear(0.04, 0.0, 0.016)  # a token pays if its acceptance > 0.016 * tokens / step time
    assert select_drafts(acc, [False, True], cost, lam=1.0) == [1, 0]  # by acceptance alone
    assert select_drafts(acc, [False, True], cost, lam=4.0) == [1, 2]  # the probe's tokens rank first
    # a fixed cost of any step with drafts larger than what the drafts can gain: no speculation
    assert select_drafts(acc, [False, True], cost, spec_overhead=0.05) == [0, 0]
    with pytest.raises(ValueError, match="lam"):
        select_drafts(acc, [False, True], cost, lam=0.5)
    with pytest.raises(ValueError, match="one entry per request"):
        select_drafts(acc, [False], cost)


def test_draft_acceptance_starts_at_the_tree_probability_and_learns_the_engine():
    cal = DraftAcceptance(prior_weight=8.0, halflife=1e9)
    keys = cal.keys([0.55, 0.95], match_len=1)
    assert keys == [acceptance_key(0.55, 1, 0), acceptance_key(0.95, 1, 1)]
    assert cal.cumulative(keys) == pytest.approx([0.55, 0.55 * 0.95])
    for _ in range(200):  # the tree says 0.5, the target model accepts 1 in 5
        cal.record(keys[:1], 0)
    for _ in range(50):
        cal.record(keys[:1], 1)
    assert cal.conditional(keys[0]) == pytest.approx((50 + 8 * 0.55) / (250 + 8), rel=1e-6)
    # positions after the first rejection are never decided: not recorded
    cal.record(keys, 0)
    assert "9,0,1" not in cal.table()
    cal.record(keys, 1)  # first accepted, second rejected: both decided
    assert cal.table()["9,0,1"][0] == pytest.approx(1.0)
    # old evidence fades: the bin follows the engine
    fast = DraftAcceptance(prior_weight=0.0, halflife=10)
    k = acceptance_key(0.3, 2, 0)
    for _ in range(100):
        fast.record([k], 1)
    for _ in range(100):
        fast.record([k], 0)
    assert fast.conditional(k) < 0.01


def test_acceptance_key_buckets():
    assert acceptance_key(0.0, 1, 0) == (0, 0, 0)
    assert acceptance_key(1.0, 9, 3) == (9, 2, 1)
    assert acceptance_key(0.35, 3, 0) == (3, 1, 0)
    with pytest.raises(ValueError):
        DraftAcceptance(halflife=0)


def test_select_drafts_min_gain_drops_savings_within_the_estimates_error():
    # batch 8 on the CPU fit: one token accepted half the time saves ~3% of the time per token -- drafted without
    # a margin, not with 5%; a confident draft there saves ~11%, and alone on the engine ~38%: kept
    def saving(acc, lens, batch):
        got = sum(sum(a[:m]) for a, m in zip(acc, lens))
        return 1 - (CPU(batch, batch + sum(lens)) / (batch + got)) / (CPU(batch, batch) / batch)

    half, confident = [[0.5]], [[0.8, 0.6, 0.4]]
    at8 = select_drafts(half, [False], CPU, batch=8)
    assert at8 == [1] and 0.01 < saving(half, at8, 8) < 0.05
    assert select_drafts(half, [False], CPU, batch=8, min_gain=0.05) == [0]
    kept = select_drafts(confident, [False], CPU, batch=8, min_gain=0.05)
    assert kept == [3] and saving(confident, kept, 8) > 0.05
    alone = select_drafts(confident, [False], CPU, min_gain=0.05)
    assert alone == [3] and saving(confident, alone, 1) > 0.3
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="min_gain"):
            select_drafts(confident, [False], CPU, min_gain=bad)
