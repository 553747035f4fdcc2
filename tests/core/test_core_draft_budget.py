"""Draft budgets (paper §3.4, Algorithm 1 MBA) and the step-time model."""

from __future__ import annotations

import math

import pytest

from seer_verl.core.draft_budget import (
    acceptance_curve,
    best_total_draft,
    expected_tokens,
    mba_allocate,
    t_sd,
)
from seer_verl.core.step_time import StepTimeModel

# memory-bound GPU-like decode: big fixed cost, small per-token compute
GPU = StepTimeModel(c0=0.015, c_seq=2e-5, c_tok=4e-5, c_kv=0.0)
# the same engine with heavier per-token compute: large batches are compute-bound
CB = StepTimeModel(c0=0.015, c_seq=2e-5, c_tok=1e-4, c_kv=0.0)


def step(model: StepTimeModel, kv: float = 0.0):
    return lambda n, q: model.step_time(n, q, kv)


def test_expected_tokens_matches_closed_form():
    for alpha in (0.0, 0.3, 0.6, 0.9):
        for g in range(9):
            closed = (1 - alpha ** (g + 1)) / (1 - alpha)
            assert expected_tokens([alpha] * g, g) == pytest.approx(closed)
    assert acceptance_curve([0.5, 0.4], 3) == pytest.approx([0.5, 0.2, 0.08])  # last entry reused
    assert expected_tokens([], 3) == 1.0


def test_t_sd_is_the_papers_formula():
    alpha, B, g = 0.6, 16, 4
    T = GPU.step_time(B, B * (g + 1), 0)
    paper = (1 - alpha) * T / (1 - alpha ** (g + 1))
    assert t_sd(B, g, [alpha] * 8, step(GPU)) == pytest.approx(paper)
    # with a drafting cost D(B, gamma)
    D = lambda n, k: 1e-4 * n * k
    assert t_sd(B, g, [alpha] * 8, step(GPU), D) == pytest.approx((1 - alpha) * (T + D(B, g)) / (1 - alpha ** (g + 1)))


def test_best_total_draft_small_vs_large_batch():
    beta = [0.6] * 8
    g1, total1 = best_total_draft(1, beta, 8, step(GPU))
    assert g1 >= 3 and total1 == g1
    # compute-bound batch: verification cost dominates, speculation does not pay
    g_big, total_big = best_total_draft(4096, beta, 8, step(CB))
    assert g_big == 0 and total_big == 0
    assert best_total_draft(0, beta, 8, step(GPU)) == (0, 0)
    # gamma* never increases with the batch for a linear step model
    prev = 9
    for b in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512):
        g, _ = best_total_draft(b, beta, 8, step(GPU))
        assert g <= prev
        prev = g


def test_best_total_draft_is_the_argmin():
    beta = [0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    for b in (1, 8, 64, 300):
        g, _ = best_total_draft(b, beta, 8, step(GPU))
        times = [t_sd(b, k, beta, step(GPU)) for k in range(9)]
        assert times[g] == pytest.approx(min(times))


def test_mba_budget_limits_and_priority():
    beta = [0.6] * 8
    for bh, bl in ((1, 0), (0, 5), (2, 30), (8, 8), (16, 200)):
        gh, gl = mba_allocate(bh, bl, beta, 8, 2.0, step(GPU))
        _, budget = best_total_draft(bh + bl, beta, 8, step(GPU))
        assert 0 <= gh <= 8 and 0 <= gl <= 8
        assert gh * bh + gl * bl <= budget
        if bh == 0:
            assert gh == 0
        if bl == 0:
            assert gl == 0
    # with equal class sizes, the priority factor makes the probes' drafts at least as long
    gh, gl = mba_allocate(8, 8, beta, 8, 2.0, step(GPU))
    assert gh >= gl and gh > 0
    # a larger priority factor never gives the high class less; the literal (printed) rule does the opposite
    a = mba_allocate(4, 32, beta, 8, 1.0, step(GPU))
    b = mba_allocate(4, 32, beta, 8, 8.0, step(GPU))
    assert b[0] >= a[0]
    lit = mba_allocate(8, 8, beta, 8, 2.0, step(GPU), literal=True)
    assert lit[0] <= lit[1]


def test_mba_disables_speculation_when_it_does_not_pay():
    assert mba_allocate(16, 4000, [0.6] * 8, 8, 2.0, step(CB)) == (0, 0)
    assert mba_allocate(0, 0, [0.6] * 8, 8, 2.0, step(GPU)) == (0, 0)
    assert mba_allocate(4, 4, [0.0] * 8, 8, 2.0, step(GPU)) == (0, 0)  # nothing is ever accepted


def test_mba_follows_the_greedy_rule():
    """Hand-checked case: B_h=2, B_l=4, budget 4*6=24 drafts."""
    beta = [0.8] * 8
    gh, gl = mba_allocate(2, 4, beta, 8, 2.0, lambda n, q: 1.0)  # flat step time: gamma* = gamma_max
    # budget 48: gamma_h starts at 1 (remaining 46); h gets a position while 2*(2*0.8^(gh+1)) > 4*0.8^(gl+1)
    acc = [0.8 ** (i + 1) for i in range(8)]
    h, low, rem = 1, 0, 48 - 2
    while True:
        bh = 2 * acc[h] if h < 8 else -1
        bl = 4 * acc[low] if low < 8 else -1
        if h < 8 and rem >= 2 and 2.0 * bh > bl:
            h, rem = h + 1, rem - 2
        elif low < 8 and rem >= 4:
            low, rem = low + 1, rem - 4
        else:
            break
    assert (gh, gl) == (h, low)


def test_mba_rejects_bad_arguments():
    with pytest.raises(ValueError):
        mba_allocate(-1, 2, [0.5], 8, 2.0, step(GPU))
    with pytest.raises(ValueError):
        mba_allocate(1, 2, [0.5], 8, 0.5, step(GPU))
    with pytest.raises(ValueError):
        acceptance_curve([1.5], 2)
    with pytest.raises(ValueError):
        best_total_draft(4, [0.5], -1, step(GPU))


def test_step_time_model_closed_forms(tmp_path):
    m = StepTimeModel(c0=0.01, c_seq=1e-3, c_tok=2e-4, c_kv=1e-6, name="t", meta={"x": 1})
    B, Q, kv, dkv = 8, 8, 5000.0, 8.0
    per_step = sum(m.step_time(B, Q, kv + j * dkv) for j in range(100))
    assert m.decode_time(B, Q, kv, dkv, 100) == pytest.approx(per_step)
    for budget in (0.0, 0.005, 0.3, 1.7, 12.0):
        k = m.steps_within(B, Q, kv, dkv, budget)
        assert m.decode_time(B, Q, kv, dkv, k) <= budget + 1e-12
        assert m.decode_time(B, Q, kv, dkv, k + 1) > budget
    p = m.save(tmp_path / "m.json")
    assert StepTimeModel.load(p) == m and StepTimeModel.load(p).meta == {"x": 1}
    with pytest.raises(ValueError):
        StepTimeModel(c0=-1.0)
    with pytest.raises(ValueError):
        StepTimeModel.from_dict({"c0": 1.0, "bogus": 2})
    assert math.isclose(m.decode_time(B, Q, kv, dkv, 0), 0.0)
