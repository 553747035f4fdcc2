"""Unit tests of seer_verl.core.placement (KV headroom, prefix affinity, least-loaded)."""

from __future__ import annotations

import pytest

from seer_verl.core import EngineState, Placement, PlacementError, RolloutRequest, kv_footprint


def req(engine=None, prompt_len=10, generated=0, max_tokens=100):
    r = RolloutRequest(0, 0, 0, prompt_len, max_tokens, engine=engine)
    r.token_ids.extend([0] * generated)
    return r


def engines(*specs):
    """specs: (capacity, reserved, inflight[, block]) per engine; ids 0..n-1."""
    out = []
    for i, s in enumerate(specs):
        cap, res, inf = s[:3]
        out.append(EngineState(i, cap, s[3] if len(s) > 3 else 1, res, inf))
    return out


def test_footprint_rounds_prompt_generated_and_budget_up_to_blocks():
    assert kv_footprint(33, 16) == 48 and kv_footprint(32, 16) == 32 and kv_footprint(0, 16) == 0
    p = Placement([EngineState(7, 1000, block_size=16)])
    assert p.footprint(req(prompt_len=10, generated=5), 20, 7) == 48  # 35 -> 48


def test_prefers_prefix_engine_while_balanced():
    es = engines((100, 0, 2), (100, 0, 0), (100, 0, 1))
    p = Placement(es, affinity_threshold=2)
    d = p.decide(req(engine=0), 10)
    assert (d.engine_id, d.reason) == (0, "affinity")


def test_imbalance_above_threshold_switches_to_least_loaded():
    es = engines((100, 0, 3), (100, 0, 0), (100, 0, 1))
    p = Placement(es, affinity_threshold=2)
    d = p.decide(req(engine=0), 10)
    assert (d.engine_id, d.reason) == (1, "imbalance")


def test_prefix_engine_without_headroom_is_skipped():
    es = engines((30, 25, 0), (100, 50, 5))
    p = Placement(es, affinity_threshold=100)
    d = p.decide(req(engine=0, prompt_len=10), 10)  # needs 20 tokens, engine 0 has 5 free
    assert (d.engine_id, d.reason) == (1, "no_room")


def test_least_loaded_ties_broken_by_free_kv_then_lowest_id():
    es = engines((100, 50, 1), (100, 10, 1), (100, 10, 1), (100, 0, 2))
    p = Placement(es)
    d = p.decide(req(), 5)
    assert (d.engine_id, d.reason) == (1, "first")


def test_no_candidate_returns_none_and_dead_or_full_engines_are_excluded():
    es = engines((100, 95, 0), (1000, 0, 2), (1000, 0, 0))
    p = Placement(es, max_inflight_per_engine=2)
    p.mark_dead(2)
    assert p.select(req(), 10) is None
    assert p.decide(req(), 10).reason == "none"
    assert p.any_slot()  # engine 0 has a slot (only its KV is short)
    p.mark_dead(0)
    assert not p.any_slot()  # engine 1 is at its in-flight cap, 0 and 2 are dead
    assert p.can_ever_fit(1000) and not p.can_ever_fit(1001)


def test_reserve_and_release_update_state_and_never_over_commit():
    es = engines((100, 0, 0))
    p = Placement(es, max_inflight_per_engine=2)
    p.reserve(0, 60)
    assert (es[0].reserved_tokens, es[0].inflight, es[0].free_tokens) == (60, 1, 40)
    with pytest.raises(PlacementError, match="cannot reserve 41"):
        p.reserve(0, 41)
    p.reserve(0, 40)
    assert es[0].free_tokens == 0
    with pytest.raises(PlacementError, match="cap 2"):
        p.reserve(0, 0)
    p.release(0, 60)
    assert (es[0].reserved_tokens, es[0].inflight) == (40, 1)
    with pytest.raises(PlacementError, match="does not match"):
        p.release(0, 41)
    p.mark_dead(0)
    assert (es[0].alive, es[0].reserved_tokens, es[0].inflight) == (False, 0, 0)
    with pytest.raises(PlacementError, match="dead"):
        p.reserve(0, 1)


def test_invalid_engine_tables_are_rejected():
    with pytest.raises(ValueError, match="twice"):
        Placement([EngineState(1, 10), EngineState(1, 10)])
    with pytest.raises(ValueError, match="at least one"):
        Placement([])
    with pytest.raises(ValueError, match="block_size"):
        Placement([EngineState(0, 10, block_size=0)])
    with pytest.raises(KeyError, match="unknown engine id 5"):
        Placement([EngineState(0, 10)]).engine(5)
