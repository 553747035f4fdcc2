"""OnlineStepTimeFit: learns an engine's step time from its own decode steps, regularised towards a prior."""

from __future__ import annotations

import random

import pytest

from seer_verl.core.draft_budget import mba_allocate
from seer_verl.core.step_time_fit import OnlineStepTimeFit

TRUE = (0.066, 0.0, 0.00625)       # CPU-like: every query token (decode or draft) costs ~6 ms
WRONG_PRIOR = (0.069, 0.0018, 0.0018)  # a draft token priced ~3.5x too cheap


def _feed(fit, n, rng, noise=0.03):
    for _ in range(n):
        b = rng.randint(1, 12)
        q = b * (1 + rng.choice([0, 0, 1, 2, 4, 8]))
        t = (TRUE[0] + TRUE[1] * b + TRUE[2] * q) * (1 + rng.uniform(-noise, noise))
        fit.add(b, q, t)


def test_no_data_means_prior():
    fit = OnlineStepTimeFit(WRONG_PRIOR)
    assert fit.coefficients == WRONG_PRIOR
    assert fit.predict(4, 8) == pytest.approx(0.069 + 0.0018 * 4 + 0.0018 * 8)


def test_learns_the_true_marginal_token_cost():
    fit = OnlineStepTimeFit(WRONG_PRIOR)
    _feed(fit, 800, random.Random(0))
    c0, cs, ct = fit.coefficients
    # the cost of one more query token at a fixed batch is what the draft budget needs
    assert ct == pytest.approx(TRUE[2], rel=0.15)
    for b, q in ((1, 1), (8, 8), (8, 40)):
        assert fit.predict(b, q) == pytest.approx(TRUE[0] + TRUE[1] * b + TRUE[2] * q, rel=0.1)


def test_collinear_data_stays_near_prior_split():
    fit = OnlineStepTimeFit(WRONG_PRIOR)
    rng = random.Random(1)
    for _ in range(400):  # no drafts ever: query tokens == seqs, only c_seq + c_tok is identifiable
        b = rng.randint(1, 12)
        fit.add(b, b, TRUE[0] + (TRUE[1] + TRUE[2]) * b)
    c0, cs, ct = fit.coefficients
    assert cs + ct == pytest.approx(TRUE[1] + TRUE[2], rel=0.2)
    assert fit.predict(6, 6) == pytest.approx(TRUE[0] + (TRUE[1] + TRUE[2]) * 6, rel=0.1)


def test_outliers_are_skipped():
    fit = OnlineStepTimeFit(TRUE)
    assert not fit.add(4, 4, 50.0)  # the engine sat idle between two steps
    assert not fit.add(0, 0, 0.1) and not fit.add(4, 2, 0.1)
    assert fit.skipped == 3 and fit.recorded == 0


def test_budget_with_the_fitted_cost_stops_drafting_where_it_loses():
    beta = [0.2] * 8  # T=1.0 on a small model: one draft token in five is accepted
    fit = OnlineStepTimeFit(WRONG_PRIOR)
    wrong = mba_allocate(0, 8, beta, 8, 2.0, lambda b, q: fit.predict(b, q))
    _feed(fit, 800, random.Random(2))
    right = mba_allocate(0, 8, beta, 8, 2.0, lambda b, q: fit.predict(b, q))
    assert wrong != (0, 0) and right == (0, 0)
    # a lone tail request with a good acceptance still drafts
    assert mba_allocate(1, 0, [0.8] * 8, 8, 2.0, lambda b, q: fit.predict(b, q))[0] > 0


def test_fixed_cost_of_a_verification_step_is_priced_and_kept_out_of_the_fit():
    # a backend whose steps with any draft cost a fixed 20 ms more (another attention path), measured by a profile
    lin, spec = (0.06, 0.0005, 0.002), 0.02
    fit = OnlineStepTimeFit(lin, spec_overhead=spec)
    assert fit.predict(4, 4) == pytest.approx(0.06 + 0.0025 * 4)
    assert fit.predict(4, 5) == pytest.approx(0.06 + 0.0005 * 4 + 0.002 * 5 + spec)
    rng = random.Random(3)
    for _ in range(600):
        b = rng.randint(1, 12)
        q = b * (1 + rng.choice([0, 1, 2]))
        fit.add(b, q, lin[0] + lin[1] * b + lin[2] * q + (spec if q > b else 0.0))
    assert fit.coefficients == pytest.approx(lin, rel=0.05, abs=2e-4)  # the fixed cost did not leak into c0/c_tok
    # the budget sees it: one draft token for a lone request must buy more than the fixed cost
    assert mba_allocate(1, 0, [0.2] * 8, 8, 2.0, fit.predict) == (0, 0)
    assert OnlineStepTimeFit(lin).predict(1, 2) < fit.predict(1, 2)
    with pytest.raises(ValueError, match="spec_overhead"):
        OnlineStepTimeFit(lin, spec_overhead=-1.0)
