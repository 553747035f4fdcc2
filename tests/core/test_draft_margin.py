"""The draft budget's learnt margin: realised savings, optimism and the bar it sets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seer_verl.core.draft_budget import predicted_saving
from seer_verl.core.draft_margin import BandedDraftMargin, DraftMargin, realised_saving


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


def test_bands_split_by_powers_of_two_and_learn_apart():
    m = BandedDraftMargin(min_gain=0.05, bands=5, prior_steps=0)
    assert [m.band(r) for r in (1, 2, 3, 4, 7, 8, 15, 16, 64)] == [0, 1, 1, 2, 2, 3, 3, 4, 4]
    for _ in range(50):  # the bulk (12 rows) overstates its savings by 20 points; the tail (1 row) is honest
        m.tick()
        m.record(12, 0.25, 0.05)
        m.record(1, 0.25, 0.25)
    assert m.margin(12) == pytest.approx(0.25) and m.margin(9) == m.margin(12)
    assert m.margin(1) == pytest.approx(0.05)  # the tail's own evidence: honest
    # a band without evidence drafts against the engine-wide optimism (here the mean of both: 0.10)
    assert m.margin(2) == pytest.approx(0.15) and m.margin(40) == pytest.approx(0.15)
    assert m.recorded == 100 and [b["recorded"] for b in m.table()] == [50, 0, 0, 50, 0]
    assert [b["rows_from"] for b in m.table()] == [1, 2, 4, 8, 16]
    with pytest.raises(ValueError, match="bands=0"):
        BandedDraftMargin(bands=0)


def test_a_band_with_little_evidence_learns_from_the_engine_and_one_with_much_from_itself():
    # T=1.0: the budget overstates by 30 points at 12 rows; the 4-7 band has drafted twice: it must not start
    # from min_gain (and lose ~30 steps' worth before its bar moves) but from the engine's bar
    m = BandedDraftMargin(min_gain=0.05, bands=5, prior_steps=30)
    for _ in range(100):
        m.tick()
        m.record(12, 0.35, 0.05)
    m.record(5, 0.35, 0.05)
    m.record(5, 0.35, 0.05)
    engine_wide = 0.05 + 0.30 * 102 / 132
    assert m.margin(5) == pytest.approx(engine_wide, rel=0.02) and m.margin(16) == pytest.approx(engine_wide, rel=0.02)
    # the tail: 400 drafted steps whose savings held: its own bar, near min_gain, whatever the bulk learnt
    for _ in range(400):
        m.tick()
        m.record(1, 0.4, 0.4)
    assert m.margin(1) < 0.05 + 0.1 * (m.margin(12) - 0.05) and m.margin(12) > 0.2


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 100), st.floats(-1, 1), st.floats(-3, 1), st.booleans()), max_size=80))
def test_one_band_is_the_engine_wide_margin_and_no_bar_falls_below_min_gain(events):
    one, plain, many = BandedDraftMargin(bands=1), DraftMargin(), BandedDraftMargin(bands=5)
    for rows, predicted, realised, drafted in events:
        for m in (one, plain, many):
            m.tick()
        if drafted:
            one.record(rows, predicted, realised)
            plain.record(predicted, realised)
            many.record(rows, predicted, realised)
    for rows in (1, 3, 9, 100):
        assert one.margin(rows) == pytest.approx(plain.margin)
        assert 0.05 <= many.margin(rows) <= 0.95
