"""Continuation-first dispatch, the KV growth reserve and request start ranks (seer_verl.core.controller)."""

from __future__ import annotations

import pytest

from seer_verl.core import EngineState, Placement, RequestBuffer, RolloutController, SeerConfig


def ctrl(rows, max_tokens, engines, true_lens=None, **cfg):
    buf = RequestBuffer.from_rows(rows, max_tokens, true_lens)
    return RolloutController(buf, engines, SeerConfig(**{"policy": "divided", "chunk_align": 0, "kv_reserve": 1.0, **cfg}))


def test_a_finished_chunk_continues_at_once_on_its_engine_before_older_waiting_requests():
    # one engine with room for two 10-token chunks of 2-token prompts (footprint 12 each); four requests
    c = ctrl([(0, 2)] * 4, 20, [EngineState(0, 26, 1)], chunk_size=10, precedence="start")
    first = c.next_dispatches()
    assert [d.req_id for d in first] == [0, 1]
    c.complete(first[0], list(range(10)), [0.0] * 10, False)
    (d,) = c.next_dispatches()
    # FCFS would serve request 2 (waiting since the start); the continuation of request 0 goes first
    assert (d.req_id, d.engine_id, d.continuation, d.chunk_index, d.priority) == (0, 0, True, 1, 0)
    assert c.metrics["continuations"] == 1


def test_the_paper_loop_serves_waiting_requests_in_policy_order():
    c = ctrl([(0, 2)] * 4, 20, [EngineState(0, 26, 1)], chunk_size=10, continuation="policy", precedence="start")
    first = c.next_dispatches()
    c.complete(first[0], list(range(10)), [0.0] * 10, False)
    (d,) = c.next_dispatches()
    assert (d.req_id, d.continuation, d.priority) == (2, False, 2)
    assert c.metrics["continuations"] == 0


def test_a_continuation_may_outgrow_its_engine_while_its_expected_kv_fits_and_blocks_new_requests():
    # (one request per group here and below: no prompt is shared, so the KV sums are the chunks' own)
    # capacity 24: two chunks of (context 2, growth 10) fill it. Request 0's continuation (context 12, growth 10)
    # would reserve 12 + 22 = 34 > 24, but its expected KV, contexts 2 + 12 plus half of the growth (10 + 10),
    # is 24: it continues, and no new request lands on the over-committed engine.
    c = ctrl([(g, 2) for g in range(3)], 20, [EngineState(0, 24, 1)], chunk_size=10)
    a, b = c.next_dispatches()
    c.complete(a, list(range(10)), [0.0] * 10, False)
    (a2,) = c.next_dispatches()
    assert a2.req_id == 0 and a2.continuation
    e = c.placement.engine(0)
    assert e.reserved_tokens == 34 > e.capacity_tokens
    assert c.next_dispatches() == []
    # request 1's continuation: contexts 12 + 12 + (10 + 10) / 2 = 34 > 24: it waits in the policy's order
    c.complete(b, list(range(10)), [0.0] * 10, False)
    assert c.next_dispatches() == [] and c.metrics["continuations"] == 1
    c.complete(a2, list(range(10)), [0.0] * 10, False)  # request 0 reaches max_tokens
    ds = c.next_dispatches()  # FCFS: request 2 (waiting since the start) before request 1 (since its chunk)
    assert [(d.req_id, d.continuation) for d in ds] == [(2, False)]


def test_on_a_full_engine_the_request_that_started_first_continues_and_the_later_one_yields():
    # capacity 24, two requests (prompt 2, chunk 10, max 22). Request 1's continuation fits its expected KV (2 + 12 +
    # (10 + 10) / 2 = 24) and goes on. Request 0 (started first) then reaches its boundary: expected 12 + 12 + 10 =
    # 34 > 24, but request 1, which started after it, runs there and the two contexts (24) fit: request 0 continues,
    # as vLLM would keep its oldest request and preempt the newest. At request 1's next boundary nothing that
    # started later runs there: it waits.
    c = ctrl([(g, 2) for g in range(2)], 22, [EngineState(0, 24, 1)], chunk_size=10)
    a, b = c.next_dispatches()
    c.complete(b, list(range(10)), [0.0] * 10, False)
    (b2,) = c.next_dispatches()
    assert (b2.req_id, b2.continuation, c.metrics["outranked"]) == (1, True, 0)
    c.complete(a, list(range(10)), [0.0] * 10, False)
    (a2,) = c.next_dispatches()
    assert (a2.req_id, a2.continuation, a2.engine_id, c.metrics["outranked"]) == (0, True, 0, 1)
    e = c.placement.engine(0)
    assert e.context_tokens == 24 <= e.capacity_tokens < e.reserved_tokens
    c.complete(b2, list(range(10)), [0.0] * 10, False)
    assert c.next_dispatches() == [] and c.metrics["outranked"] == 1


# (that the contexts must fit is checked by the property tests' invariant, which fails without it: under a whole
# reserve here the contexts at a boundary never exceed what the chunks first reserved)
@pytest.mark.parametrize("cfg, capacity", [({"continuation": "fit"}, 24), ({"kv_reserve": 0.0}, 24)])
def test_a_request_does_not_go_ahead_of_a_later_one_under_fit_or_when_the_growth_is_not_reserved(cfg, capacity):
    # the scenario above under "fit", or with no growth reserved (the contexts alone are counted: a continuation
    # then fits or waits like any chunk)
    c = ctrl([(g, 2) for g in range(3)], capacity - 2, [EngineState(0, capacity, 1)], chunk_size=10, **cfg)
    ds = c.next_dispatches()
    assert c.metrics["outranked"] == 0
    for d in ds:
        c.complete(d, list(range(10)), [0.0] * 10, False)
        c.next_dispatches()
    assert c.metrics["outranked"] == 0


def test_start_rank_is_kept_by_every_chunk_and_follows_first_dispatch_order():
    c = ctrl([(0, 2)] * 3, 30, [EngineState(0, 1000, 1)], chunk_size=10, precedence="start")
    ds = c.next_dispatches()
    assert [(d.req_id, d.priority) for d in ds] == [(0, 0), (1, 1), (2, 2)]
    c.complete(ds[2], list(range(10)), [0.0] * 10, False)
    (d,) = c.next_dispatches()
    assert (d.req_id, d.priority) == (2, 2)


def test_by_context_the_longer_context_goes_first_and_ties_go_by_start():
    # the default precedence: priority = -context * 2**32 + start rank, lower first on the engines
    c = ctrl([(0, 2)] * 3, 30, [EngineState(0, 1000, 1)], chunk_size=10)
    ds = c.next_dispatches()
    assert [(d.req_id, d.priority) for d in ds] == [(0, -2 * 2**32), (1, -2 * 2**32 + 1), (2, -2 * 2**32 + 2)]
    c.complete(ds[2], list(range(10)), [0.0] * 10, False)
    (d,) = c.next_dispatches()
    assert (d.req_id, d.priority) == (2, -12 * 2**32 + 2) and d.priority < ds[0].priority


@pytest.mark.parametrize("precedence, continues", [("start", True), ("context", False)])
def test_on_a_full_engine_the_shorter_context_yields_by_context_the_later_start_by_start(precedence, continues):
    # prompts 2 (request 0, started first) and 6; chunk 10; capacity 28 holds both first chunks (12 + 16). Request 1
    # continues at context 16 (expected 2 + 16 + (10 + 10) / 2 = 28 fits). Request 0 then reaches its boundary at
    # context 12: expected 12 + 16 + 10 = 38 > 28, the contexts (28) fit. By start it goes before request 1 and
    # continues; by context request 1's chunk (16) goes first and request 0, cheaper to recompute, waits.
    c = ctrl([(0, 2), (1, 6)], 22, [EngineState(0, 28, 1)], chunk_size=10, precedence=precedence)
    a, b = c.next_dispatches()
    c.complete(b, list(range(10)), [0.0] * 10, False)
    (b2,) = c.next_dispatches()
    assert (b2.req_id, b2.continuation) == (1, True)
    c.complete(a, list(range(10)), [0.0] * 10, False)
    ds = c.next_dispatches()
    assert ([d.req_id for d in ds] == [0]) is continues
    assert c.metrics["outranked"] == int(continues)


def test_precedence_rejects_an_unknown_value_naming_the_key():
    with pytest.raises(ValueError, match="seer.precedence.*'context', 'start'.*'oldest'"):
        SeerConfig(precedence="oldest").validate()


@pytest.mark.parametrize("share, admitted", [(1.0, 2), (0.5, 4), (0.0, 5)])
def test_kv_reserve_scales_the_growth_counted_against_the_engine(share, admitted):
    # prompts of 2 tokens, chunk 10, capacity 30: full growth admits 2 (12 each); half of it 4 (8 + 20); the
    # context alone would admit 15, the in-flight cap of 5 stops it
    c = ctrl([(g, 2) for g in range(6)], 20, [EngineState(0, 30, 1)], chunk_size=10, kv_reserve=share,
             max_inflight_per_engine=5)
    assert len(c.next_dispatches()) == admitted


def test_release_returns_exactly_what_a_fractional_growth_reserve_took():
    es = [EngineState(0, 100, 1)]
    p = Placement(es, growth_share=0.5)
    p.reserve(0, 10, 5)  # 10 + ceil(2.5)
    p.reserve(0, 10, 5)  # growth 10 -> 5
    assert es[0].reserved_tokens == 25
    p.release(0, 10, 5)
    assert es[0].reserved_tokens == 13
    p.release(0, 10, 5)
    assert (es[0].reserved_tokens, es[0].context_tokens, es[0].growth_sum, es[0].inflight) == (0, 0, 0, 0)


@pytest.mark.parametrize("key, value", [("kv_reserve", -0.1), ("kv_reserve", 9), ("kv_reserve", "sometimes"),
                                        ("kv_reserve", True), ("continuation", "always")])
def test_bad_values_name_the_key(key, value):
    with pytest.raises(ValueError, match=f"seer.{key}"):
        SeerConfig(**{key: value}).validate()


def test_fit_continues_only_when_the_full_reservation_fits():
    # the scenario of the over-commit test: under "first" request 0 continues (expected KV 24 <= 24); under "fit"
    # its full reservation (34 > 24) does not fit, so it waits and FCFS serves request 2 once room frees
    c = ctrl([(g, 2) for g in range(3)], 20, [EngineState(0, 24, 1)], chunk_size=10, continuation="fit")
    a, b = c.next_dispatches()
    c.complete(a, list(range(10)), [0.0] * 10, False)
    (d,) = c.next_dispatches()
    assert (d.req_id, d.continuation) == (2, False)
    assert c.placement.engine(0).reserved_tokens <= 24
    # with room for the full reservation (capacity 34: 12 + 22), "fit" continues where the paper's loop would
    # serve the older waiting request 2
    for mode, expected in (("fit", (0, True)), ("policy", (2, False))):
        c = ctrl([(g, 2) for g in range(4)], 20, [EngineState(0, 34, 1)], chunk_size=10, continuation=mode)
        a, _ = c.next_dispatches()
        c.complete(a, list(range(10)), [0.0] * 10, False)
        (d,) = c.next_dispatches()
        assert (d.req_id, d.continuation) == expected, mode


def test_auto_reserve_admits_on_contexts_when_the_newcomers_fit_beside_them():
    # 3 prompts of 2 tokens, chunk 10, capacity 30: the requests not yet started need 6 <= 30 tokens, so "auto"
    # reserves no growth and all three run; the paper's full reserve (12 each) admits two
    auto = ctrl([(g, 2) for g in range(3)], 20, [EngineState(0, 30, 1)], chunk_size=10, kv_reserve="auto")
    assert auto.growth_share_now() == 0.0
    assert len(auto.next_dispatches()) == 3 and auto.metrics["growth_reserved"] == 0
    full = ctrl([(g, 2) for g in range(3)], 20, [EngineState(0, 30, 1)], chunk_size=10, kv_reserve=1.0)
    assert len(full.next_dispatches()) == 2 and full.metrics["growth_reserved"] == 2


def test_auto_reserve_keeps_the_growth_while_newcomers_compete_and_drops_it_after():
    # 4 prompts of 10 tokens, chunk 10, capacity 30: not-started contexts 40 > 30 free, so the growth is reserved
    # (20 per chunk) and one request runs
    c = ctrl([(g, 10) for g in range(4)], 20, [EngineState(0, 30, 1)], chunk_size=10, kv_reserve="auto")
    (a,) = c.next_dispatches()
    e = c.placement.engine(0)
    assert (e.reserved_tokens, c.placement.growth_share, c.metrics["growth_reserved"]) == (20, 1.0, 1)
    assert c.growth_share_now() == 1.0  # 30 not started > 20 free beside the running context
    # request 0's chunk completes and it continues at once (context 20): 30 not started > 10 free beside it, so the
    # growth stays reserved and nobody joins it
    c.complete(a, list(range(10)), [0.0] * 10, False)
    assert c.growth_share_now() == 1.0
    (a2,) = c.next_dispatches()
    assert a2.req_id == 0 and a2.continuation and c.placement.growth_share == 1.0
    # request 0 ends: 30 not started <= 30 free, no growth reserved, the three others run on their contexts
    c.complete(a2, list(range(4)), [0.0] * 4, True)
    ds = c.next_dispatches()
    assert [d.req_id for d in ds] == [1, 2, 3] and c.placement.growth_share == 0.0
    assert (e.reserved_tokens, e.context_tokens) == (30, 30)


def test_auto_reserve_counts_a_started_request_that_waits_for_its_next_chunk():
    # capacity 24, three prompts of 2 tokens (chunk 10, max 22): all fit, no growth reserved, all three run.
    # Request 0 continues (contexts 2 + 2 + 12 = 16); request 1's continuation (12) no longer fits beside them
    # (16 + 12 = 28 > 24) and waits. Nothing waits that has not started, but request 1 now competes for the KV
    # (12 > 24 - 14 free): the growth is reserved again, which keeps it from being crowded out once more.
    c = ctrl([(g, 2) for g in range(3)], 22, [EngineState(0, 24, 1)], chunk_size=10, kv_reserve="auto")
    a, b, _ = c.next_dispatches()
    assert c.placement.growth_share == 0.0
    c.complete(a, list(range(10)), [0.0] * 10, False)
    (a2,) = c.next_dispatches()
    assert a2.req_id == 0 and c.growth_share_now() == 0.0
    c.complete(b, list(range(10)), [0.0] * 10, False)
    assert c.next_dispatches() == [] and 1 in c.scheduler
    assert c.growth_share_now() == 1.0


def test_switching_the_growth_share_recounts_every_engine_and_releases_stay_exact():
    es = [EngineState(0, 100, 1), EngineState(1, 100, 1)]
    p = Placement(es, growth_share=0.0)
    p.reserve(0, 10, 5)
    p.reserve(1, 20, 7)
    assert [e.reserved_tokens for e in es] == [10, 20]
    p.set_growth_share(1.0)
    assert [e.reserved_tokens for e in es] == [15, 27]
    p.release(0, 10, 5)
    p.set_growth_share(0.0)
    assert [e.reserved_tokens for e in es] == [0, 20]
    p.release(1, 20, 7)
    assert all((e.reserved_tokens, e.context_tokens, e.growth_sum, e.inflight) == (0, 0, 0, 0) for e in es)
    with pytest.raises(ValueError, match="growth_share"):
        p.set_growth_share(9.0)


def test_auto_new_reserve_counts_only_requests_that_have_not_started():
    # the scenario above: request 1's next chunk waits and nothing waits that has not started. "auto" reserves the
    # growth again; "auto_new" (the rule before e5c56fc) does not
    for mode, expected in (("auto", 1.0), ("auto_new", 0.0)):
        c = ctrl([(g, 2) for g in range(3)], 22, [EngineState(0, 24, 1)], chunk_size=10, kv_reserve=mode)
        a, b, _ = c.next_dispatches()
        c.complete(a, list(range(10)), [0.0] * 10, False)
        c.next_dispatches()
        c.complete(b, list(range(10)), [0.0] * 10, False)
        assert c.next_dispatches() == [] and 1 in c.scheduler
        assert c.growth_share_now() == expected, mode
    # while newcomers compete, both reserve: 4 prompts of 10 tokens, capacity 30
    for mode in ("auto", "auto_new"):
        c = ctrl([(g, 10) for g in range(4)], 20, [EngineState(0, 30, 1)], chunk_size=10, kv_reserve=mode)
        c.next_dispatches()
        assert c.growth_share_now() == 1.0, mode


def test_requests_about_to_continue_hold_their_kv_for_the_auto_reserve():
    # 25 one-request groups (prompt 2), two engines of 24 tokens, chunks of 10: 50 tokens of prompts wait for 48
    # free, so the whole growth is reserved and two chunks (2 + 10) run on each engine. Both chunks of engine 0 then
    # complete in one burst (no dispatch call between them, as when several chunks end in one engine step). Their
    # contexts (12 each) were released, but they continue at once: the 42 tokens of requests that have not started
    # do not fit in the 44 - 24 = 20 left, so the reserve stays on. Counting the released contexts as free (before
    # this rule) switched it off, and the next call would have filled both engines with new requests by context.
    for mode in ("auto", "auto_new"):
        c = ctrl([(g, 2) for g in range(25)], 22, [EngineState(0, 24, 1), EngineState(1, 24, 1)], chunk_size=10,
                 kv_reserve=mode)
        first = c.next_dispatches()
        assert len(first) == 4 and c.placement.growth_share == 1.0, mode
        for d in first:
            if d.engine_id == 0:
                c.complete(d, list(range(10)), [0.0] * 10, False)
        assert c.growth_share_now() == 1.0, mode
        nxt = c.next_dispatches()
        assert nxt and all(d.continuation for d in nxt), (mode, nxt)
