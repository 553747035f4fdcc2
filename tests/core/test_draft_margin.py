"""The draft budget's learnt margin: realised savings, optimism and the bar it sets."""

from __future__ import annotations

import pytest

from seer_verl.core.draft_budget import predicted_saving
from seer_verl.core.draft_margin import DraftMargin, realised_saving


def test_realised_saving_is_the_cut_in_time_per_token():
    # 4 rows made 6 tokens in a step as long as the 4-token step without drafts: a third less time per token
    assert realised_saving(4, 2, 0.1, 0.1) == pytest.approx(1 / 3)
    # nothing accepted and a 20% longer step: 20% more time per token
    assert realised_saving(4, 0, 0.12, 0.1) == pytest.approx(-0.2)
    with pytest.raises(ValueError, match="num_seqs=0"):
        realised_saving(0, 1, 0.1, 0.1)


def test_predicted_saving_matches_the_budgets_arithmetic():
    step = lambda b, q: 0.05 + 0.01 * q  # noqa: E731
    # 4 rows, 4 drafts, 2 expected accepted: (0.05 + 0.08) / 6 per token against (0.05 + 0.04) / 4
    assert predicted_saving(4, 4, 2.0, step) == pytest.approx(1 - (0.13 / 6) / (0.09 / 4))
    assert predicted_saving(4, 0, 0.0, step) == 0.0
    assert predicted_saving(4, 4, 2.0, step, spec_overhead=0.01) < predicted_saving(4, 4, 2.0, step)


def test_margin_rises_by_the_optimism_and_never_falls_below_min_gain():
    honest, optimistic, pessimistic = DraftMargin(min_gain=0.05), DraftMargin(min_gain=0.05), DraftMargin(min_gain=0.05)
    for _ in range(4000):
        honest.record(0.10, 0.10)
        optimistic.record(0.10, -0.02)  # predicted 10% saved, lost 2%
        pessimistic.record(0.10, 0.30)
        for m in (honest, optimistic, pessimistic):
            m.tick()
    assert honest.margin == pytest.approx(0.05)
    assert 0.11 < optimistic.optimism <= 0.12  # the decayed evidence (~1,400 steps) against 30 prior steps
    assert optimistic.margin == pytest.approx(0.05 + optimistic.optimism)
    assert pessimistic.margin == 0.05  # a budget that underestimates keeps its own margin
    # little evidence moves the bar little (prior pseudo-steps), and old evidence fades (half-life)
    few = DraftMargin(min_gain=0.05, prior_steps=30)
    for _ in range(3):
        few.record(0.10, -0.40)
    assert few.margin < 0.1
    for _ in range(10000):  # no drafts for a while: the bar comes down and the budget tries again
        optimistic.tick()
    assert optimistic.margin < 0.06


def test_margin_is_capped_and_one_stalled_step_is_clipped():
    m = DraftMargin(min_gain=0.05, max_margin=0.3, prior_steps=0)
    m.record(0.1, -50.0)  # the host stalled the step for seconds: not 50x evidence
    assert m.optimism == pytest.approx(1.0)
    assert m.margin == 0.3
    m.record(float("nan"), 0.0)
    assert m.recorded == 1


@pytest.mark.parametrize("key,value", [("min_gain", 1.0), ("halflife", 0), ("prior_steps", -1),
                                       ("max_margin", 0.01), ("clip", 0)])
def test_bad_settings_name_the_key(key, value):
    with pytest.raises(ValueError, match=f"{key}="):
        DraftMargin(**{key: value})
