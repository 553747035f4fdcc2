"""A group's prompt KV counted once per engine (seer.share_prompt_kv; seer_verl.core.placement)."""

from __future__ import annotations

from collections import Counter

import pytest

from seer_verl.core import EngineState, Placement, PlacementError, RequestBuffer, RolloutController, SeerConfig


def ctrl(rows, max_tokens, engines, **cfg):
    buf = RequestBuffer.from_rows(rows, max_tokens)
    return RolloutController(buf, engines, SeerConfig(**{"policy": "divided", "chunk_align": 0, "kv_reserve": 1.0, **cfg}))


@pytest.mark.parametrize("share, admitted", [(True, 4), (False, 2)])
def test_siblings_on_one_engine_count_their_prompt_once(share, admitted):
    # prompts of 10 tokens, chunks of 10, capacity 50: alone a chunk needs 20; a sibling beside it 10 more
    c = ctrl([(0, 10)] * 6, 30, [EngineState(0, 50, 1)], chunk_size=10, share_prompt_kv=share)
    ds = c.next_dispatches()
    assert len(ds) == admitted
    assert c.placement.engine(0).reserved_tokens == (50 if share else 40)
    assert all((d.share_group == 0) == share for d in ds)


def test_only_full_blocks_of_the_prompt_are_shared_and_other_groups_share_nothing():
    # block 4: a 10-token prompt shares 8 tokens (2 blocks); chunk end at 20 tokens -> footprint 20
    es = [EngineState(0, 1000, 4)]
    c = ctrl([(0, 10), (0, 10), (1, 10)], 30, es, chunk_size=10)
    ds = c.next_dispatches()
    assert len(ds) == 3
    assert es[0].reserved_tokens == 20 + (20 - 8) + 20


@pytest.mark.parametrize("first", [0, 1])
def test_release_in_any_order_returns_exactly_what_was_counted(first):
    es = [EngineState(0, 100, 1)]
    p = Placement(es)
    p.share_prompt(7, 10)
    p.reserve(0, 15, 5, group=7)  # 15 + 5
    p.reserve(0, 12, 5, group=7)  # (12 - 10) + 5
    assert es[0].reserved_tokens == 27 and es[0].context_tokens == 17
    order = [(15, 5), (12, 5)]
    a, b = order[first], order[1 - first]
    p.release(0, *a, group=7)
    assert es[0].reserved_tokens == b[0] + b[1]  # the one left holds the whole prompt again
    p.release(0, *b, group=7)
    assert (es[0].reserved_tokens, es[0].context_tokens, es[0].growth_sum, es[0].inflight) == (0, 0, 0, 0)
    p.reserve(0, 12, 5, group=7)  # no sibling left: counted in full
    assert es[0].reserved_tokens == 17


def test_a_request_with_a_shorter_prompt_than_its_group_shares_nothing_and_a_later_turn_does():
    buf = RequestBuffer.from_rows([(0, 10), (0, 6), (0, 25)], 30)
    p = Placement([EngineState(0, 100, 1)])
    p.share_prompt(0, 10)
    p.share_prompt(0, 6)  # the first declaration stands
    assert [p.sharing_group(r) for r in buf] == [0, None, 0]
    with pytest.raises(PlacementError):  # a sharing chunk's context cannot be shorter than the shared prompt
        p.reserve(0, 8, 2, group=0)
    with pytest.raises(PlacementError, match="group 3"):
        p.reserve(0, 20, 2, group=3)


def test_a_dead_engine_forgets_its_groups():
    es = [EngineState(0, 100, 1), EngineState(1, 100, 1)]
    p = Placement(es)
    p.share_prompt(0, 10)
    p.reserve(0, 20, 0, group=0)
    p.mark_dead(0)
    p.reserve(1, 20, 0, group=0)
    p.reserve(1, 20, 0, group=0)
    assert es[1].reserved_tokens == 30


def test_continuation_expected_fit_counts_the_shared_prompt_once():
    # capacity 35, prompts 10, chunks 10: two siblings reserve 20 + 10 (a third would need 40). Request 0's
    # continuation (context 20, growth 10) beside its sibling: expected contexts 10 + (20 - 10) plus half of the
    # growth (10 + 10) = 30 <= 35, so it continues; counting the prompt twice (40 > 35) it would wait
    c = ctrl([(0, 10)] * 3, 20, [EngineState(0, 35, 1)], chunk_size=10)
    a, b = c.next_dispatches()
    c.complete(a, list(range(10)), [0.0] * 10, False)
    (a2,) = c.next_dispatches()
    assert a2.req_id == 0 and a2.continuation and a2.share_group == 0
    assert c.placement.engine(0).context_tokens == 10 + 10


def test_bad_value_names_the_key():
    with pytest.raises(ValueError, match="seer.share_prompt_kv"):
        SeerConfig(share_prompt_kv="yes").validate()


@pytest.mark.parametrize("policy", ["seer", "divided"])
def test_siblings_spread_over_engines_with_equal_load(policy):
    # 4 groups of 4, room for all: seer dispatches the probes first, so without the sibling tie-break each group's
    # remaining members alternate behind its probe and a group lands 3:1 on one engine (its lengths correlate)
    rows = [(g, 10) for g in range(4) for _ in range(4)]
    buf = RequestBuffer.from_rows(rows, 30)
    c = RolloutController(buf, [EngineState(0, 10_000, 1), EngineState(1, 10_000, 1)],
                          SeerConfig(policy=policy, chunk_align=0, chunk_size=10))
    ds = c.next_dispatches()
    assert len(ds) == 16
    counts = Counter((d.engine_id, buf[d.req_id].group_id) for d in ds)
    assert all(counts[(e, g)] == 2 for e in (0, 1) for g in range(4)), counts
