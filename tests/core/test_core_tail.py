"""The tail's balance (seer.tail_balance) and cache-aware prefix affinity (seer.cache_affinity) of the controller."""

from __future__ import annotations

import pytest

from seer_verl.core import EngineState, RequestBuffer, RolloutController, SeerConfig


def ctrl(rows, max_tokens, engines, **cfg):
    buf = RequestBuffer.from_rows(rows, max_tokens)
    return RolloutController(buf, engines, SeerConfig(**{"policy": "divided", "chunk_align": 0, "chunk_size": 10, **cfg}))


def done(c, d, tokens=10, stopped=False):
    return c.complete(d, list(range(tokens)), [0.0] * tokens, stopped)


@pytest.mark.parametrize("tail_balance", [2, None])
def test_a_waiting_request_waits_for_the_engine_whose_final_chunks_end_when_it_runs_less(tail_balance):
    # two engines of two slots; requests of 20 tokens in 10-token chunks, so a second chunk is final (it ends its
    # request). Engine 0 ends up running two final chunks, engine 1 one first chunk with a slot free, and two
    # requests wait: placement puts both on engine 1 as its slot frees, but engine 0 runs no chunk that continues.
    c = ctrl([(g, 2) for g in range(6)], 20, [EngineState(0, 100, 1), EngineState(1, 100, 1)],
             max_inflight_per_engine=2, tail_balance=tail_balance)
    first = {d.req_id: d for d in c.next_dispatches()}
    assert {r: d.engine_id for r, d in first.items()} == {0: 0, 1: 1, 2: 0, 3: 1}
    done(c, first[0])
    done(c, first[2])
    finals = {d.req_id: d for d in c.next_dispatches()}  # both continue on engine 0 with their final chunk
    assert {r: (d.engine_id, d.continuation) for r, d in finals.items()} == {0: (0, True), 2: (0, True)}
    done(c, first[1], tokens=3, stopped=True)  # request 1 ends early: engine 1 runs request 3 and has a free slot
    ds = c.next_dispatches()
    if tail_balance is None:
        # the first waiting request takes engine 1's slot; the second waits for any slot
        assert [(d.req_id, d.engine_id) for d in ds] == [(4, 1)]
        assert c.metrics["held_for_final"] == 0
        return
    # request 4 is held for engine 0 (no continuing chunk there, one on engine 1); request 5 takes engine 1's slot
    assert [(d.req_id, d.engine_id) for d in ds] == [(5, 1)]
    assert c.metrics["held_for_final"] == 1
    done(c, finals[0])  # request 0 ends: engine 0 frees a slot, request 4 goes there
    assert [(d.req_id, d.engine_id) for d in c.next_dispatches()] == [(4, 0)]


@pytest.mark.parametrize("tail_balance, moved", [(2, True), (3, False), (None, False)])
def test_in_the_tail_a_continuation_moves_to_an_engine_running_fewer_continuing_chunks(tail_balance, moved):
    # eight requests of 40 tokens alternate over two engines; engine 0's four end early, engine 1's run on. When
    # request 1 reaches its boundary, engine 1 runs three continuing chunks and engine 0 none: a difference above 2
    c = ctrl([(g, 2) for g in range(8)], 40, [EngineState(0, 200, 1), EngineState(1, 200, 1)],
             tail_balance=tail_balance)
    first = {d.req_id: d for d in c.next_dispatches()}
    assert sorted(r for r, d in first.items() if d.engine_id == 1) == [1, 3, 5, 7]
    for r in (0, 2, 4, 6):
        done(c, first[r], tokens=4, stopped=True)
    done(c, first[1])
    (d,) = c.next_dispatches()
    assert (d.req_id, d.continuation, d.engine_id) == (1, True, 0 if moved else 1)
    assert c.metrics["tail_moves"] == int(moved)
    # request 3 next: engine 1 runs two continuing chunks, engine 0 one (if request 1 moved) or none: it stays
    done(c, first[3])
    (d3,) = c.next_dispatches()
    assert (d3.req_id, d3.engine_id) == (3, 1)
    assert c.metrics["tail_moves"] == int(moved)


def test_the_move_goes_to_the_engine_running_the_fewest_continuing_chunks():
    # three engines, five requests each (placement alternates); engine 0 keeps one request, engine 2 none. When
    # request 1 reaches its boundary engine 1 runs four continuing chunks: engines 0 (one) and 2 (none) both run
    # more than 2 fewer, and it goes to engine 2
    c = ctrl([(g, 2) for g in range(15)], 40, [EngineState(i, 300, 1) for i in range(3)], tail_balance=2)
    first = {d.req_id: d for d in c.next_dispatches()}
    assert [sorted(r for r, d in first.items() if d.engine_id == e) for e in range(3)] == [
        [0, 3, 6, 9, 12], [1, 4, 7, 10, 13], [2, 5, 8, 11, 14]]
    for r in (0, 3, 6, 9, 2, 5, 8, 11, 14):
        done(c, first[r], tokens=4, stopped=True)
    done(c, first[1])
    (d,) = c.next_dispatches()
    assert (d.req_id, d.engine_id, c.metrics["tail_moves"]) == (1, 2, 1)


def test_a_final_chunk_does_not_move():
    # the same engines, but 20-token requests: request 1's next chunk ends it, so re-prefilling it elsewhere for one
    # chunk is not worth it
    c = ctrl([(g, 2) for g in range(8)], 20, [EngineState(0, 200, 1), EngineState(1, 200, 1)], tail_balance=0)
    first = {d.req_id: d for d in c.next_dispatches()}
    for r in (0, 2, 4, 6):
        done(c, first[r], tokens=4, stopped=True)
    done(c, first[1])
    (d,) = c.next_dispatches()
    assert (d.req_id, d.engine_id) == (1, 1) and c.metrics["tail_moves"] == 0


@pytest.mark.parametrize("cache_affinity, p4, engine", [(True, 75, 1), (False, 75, 0), (True, 70, 0)])
def test_affinity_holds_only_while_the_prefix_is_likely_cached(cache_affinity, p4, engine):
    # two engines of 100 tokens and two slots; the paper's loop (every request waits between chunks). Request 0
    # leaves engine 0 after its first chunk, with 100 - 2 (request 2's context) - 5 (half its growth) - 12 (its own
    # KV) = 81 tokens free beside its blocks. Request 4 (prompt p4, footprint p4 + 10) then takes engine 0's slot:
    # 85 new tokens evict request 0's blocks (LRU), 80 do not. Once requests 1, 3 and 4 end, engine 1 is the
    # least loaded (nothing runs there, request 2 runs on engine 0).
    c = ctrl([(0, 2), (1, 2), (2, 2), (3, 2), (4, p4)], 20, [EngineState(0, 100, 1), EngineState(1, 100, 1)],
             continuation="policy", kv_reserve=1.0, max_inflight_per_engine=2, cache_affinity=cache_affinity)
    first = {d.req_id: d for d in c.next_dispatches()}
    assert {r: d.engine_id for r, d in first.items()} == {0: 0, 1: 1, 2: 0, 3: 1}
    done(c, first[0])
    (d4,) = c.next_dispatches()
    assert (d4.req_id, d4.engine_id) == (4, 0)
    for d in (d4, first[1], first[3]):
        done(c, d, tokens=1, stopped=True)
    (d0,) = c.next_dispatches()
    assert (d0.req_id, d0.engine_id) == (0, engine)
    assert c.metrics["affinity_hits"] == int(engine == 0)


@pytest.mark.parametrize("key, value", [("tail_balance", -1), ("tail_balance", 1.5), ("tail_balance", "2"),
                                        ("cache_affinity", "yes"), ("cache_affinity", 1)])
def test_bad_tail_and_cache_settings_name_the_key(key, value):
    with pytest.raises(ValueError, match=f"seer.{key} must be"):
        SeerConfig(**{key: value}).validate()
