"""Requests that join a running rollout: agents' later turns and samples that arrive late.

A multi-turn sample calls the engine once per turn; its turn k+1 exists only once turn k has finished (its
prompt is the conversation so far). :meth:`RolloutController.add_request` adds it to the running rollout. These
property tests drive random multi-turn batches (random turn counts, lengths, tool-response sizes, completion
order, late first turns, engine failures) through the controller and check, against the driver's own model:
every turn finishes exactly once with its own length and tokens, a turn never runs before the previous one of
its sample finished, KV reservations always equal the chunks in flight and return to zero, ``done`` is exact
after every step, and the results come back in the order requests were added.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seer_core_sim import reserved_kv

from seer_verl.core import POLICY_NAMES, EngineState, NoEngineError, RequestBuffer, RolloutController, SeerConfig
from seer_verl.core import kv_footprint


def _token(rid: int, pos: int) -> int:
    return (rid * 1_000_003 + pos * 7_919) % 50_021


@st.composite
def multi_turn(draw):
    rows = draw(st.integers(1, 8))
    group_size = draw(st.integers(1, 4))
    groups = [r // group_size for r in range(rows)]
    max_tokens = draw(st.integers(1, 30))
    turns = draw(st.lists(st.integers(1, 4), min_size=rows, max_size=rows))
    # one true length per (row, turn); the tool response appended after each turn
    lens = [draw(st.lists(st.integers(1, max_tokens + 5), min_size=t, max_size=t)) for t in turns]
    tool = draw(st.integers(0, 6))
    prompt = draw(st.integers(1, 20))
    late = draw(st.sets(st.integers(0, rows - 1), max_size=max(0, rows - 1)))  # rows whose first turn comes late
    need = prompt + 4 * (max_tokens + tool) + max_tokens
    n_engines = draw(st.integers(1, 3))
    engines = [EngineState(e, kv_footprint(need, 4) + draw(st.integers(0, 2 * need)), 4) for e in range(n_engines)]
    config = SeerConfig(policy=draw(st.sampled_from([p for p in POLICY_NAMES if p != "oracle"])),
                        chunk_size=draw(st.integers(1, 12)), affinity_threshold=draw(st.integers(0, 3)),
                        starvation_bound=draw(st.one_of(st.none(), st.integers(0, 8))),
                        max_inflight_per_engine=draw(st.one_of(st.none(), st.integers(1, 3))),
                        continuation=draw(st.sampled_from(["first", "fit", "policy"])),
                        kv_reserve=draw(st.sampled_from((1.0, "auto"))))
    fail = draw(st.booleans()) and n_engines > 1
    return groups, max_tokens, lens, tool, prompt, late, engines, config, draw(st.integers(0, 2**31)), fail


def _drive(groups, max_tokens, lens, tool, prompt, late, engines, config, seed, fail):
    rng = random.Random(seed)
    first = [r for r in range(len(groups)) if r not in late]
    if not first:
        first, late = [0], set(late) - {0}
    buffer = RequestBuffer.from_rows([(groups[r], prompt) for r in first], max_tokens)
    ctl = RolloutController(buffer, engines, config)
    owner = {rid: (r, 0) for rid, r in enumerate(first)}  # req_id -> (row, turn)
    context = dict.fromkeys(range(len(groups)), prompt)  # the driver's own conversation length per row
    pending_late = sorted(late)
    next_turn: list[tuple[int, int, int | None]] = []  # (row, turn, engine of the previous turn), ready to add
    inflight: dict[int, object] = {}
    done_turns: dict[tuple[int, int], list[int]] = {}
    steps = 0
    failed = False
    while True:
        steps += 1
        assert steps < 50_000
        # new requests join at random moments: late first turns, and next turns of finished ones
        while (pending_late or next_turn) and rng.random() < 0.5:
            if pending_late and (not next_turn or rng.random() < 0.5):
                row, turn, eng = pending_late.pop(0), 0, None
            else:
                row, turn, eng = next_turn.pop(rng.randrange(len(next_turn)))
            req = ctl.add_request(groups[row], context[row], max_tokens, engine=eng)
            assert req.req_id == len(owner) and not ctl.done
            owner[req.req_id] = (row, turn)
        for d in ctl.next_dispatches():
            assert d.req_id not in {x.req_id for x in inflight.values()}
            inflight[d.dispatch_id] = d
        for e in ctl.placement.engines:  # KV reservations equal the chunks in flight
            mine = [d for d in inflight.values() if d.engine_id == e.engine_id]
            assert e.inflight == len(mine)
            assert e.reserved_tokens == reserved_kv(mine, ctl.buffer, e, growth_share=ctl.placement.growth_share)
        if fail and not failed and inflight and rng.random() < 0.05:
            victim = rng.choice([e.engine_id for e in ctl.placement.engines if e.engine_id != 0])
            try:
                for rid in ctl.fail_engine(victim):
                    inflight = {k: d for k, d in inflight.items() if d.req_id != rid}
            except NoEngineError:
                pytest.fail("engine 0 holds every request and never fails")
            failed = True
            continue
        if not inflight:
            if not pending_late and not next_turn:
                break
            assert ctl.num_waiting == 0, "requests wait with nothing in flight"
            continue
        did = rng.choice(list(inflight))
        d = inflight.pop(did)
        req = ctl.request(d.req_id)
        row, turn = owner[d.req_id]
        true_len = lens[row][turn]
        k = min(d.max_tokens, true_len - req.generated)
        toks = [_token(d.req_id, p) for p in range(req.generated, req.generated + k)]
        stopped = req.generated + k == true_len
        req = ctl.complete(d, toks, [0.0] * k, stopped)
        if req.finished:
            assert (row, turn) not in done_turns
            done_turns[(row, turn)] = list(req.token_ids)
            context[row] += len(req.token_ids) + tool
            if turn + 1 < len(lens[row]):
                next_turn.append((row, turn + 1, d.engine_id))
    assert ctl.done
    results = ctl.results()
    assert [r.req_id for r in results] == list(range(len(owner)))
    for rid, (row, turn) in owner.items():
        want = min(lens[row][turn], max_tokens)
        assert done_turns[(row, turn)] == [_token(rid, p) for p in range(want)]
    assert sorted(done_turns) == sorted((r, t) for r in range(len(groups)) for t in range(len(lens[r])))
    assert all(e.reserved_tokens == 0 and e.inflight == 0 for e in ctl.placement.engines)
    return ctl, owner


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(multi_turn())
def test_turns_and_late_rows_finish_exactly_once(case):
    _drive(*case)


def test_next_turn_prefers_the_engine_of_the_previous_turn():
    engines = [EngineState(0, 4096, 16), EngineState(1, 4096, 16)]
    ctl = RolloutController(RequestBuffer.from_rows([(0, 10), (0, 10)], 8), engines, SeerConfig(chunk_size=8))
    ds = ctl.next_dispatches()
    for d in ds:
        ctl.complete(d, [1] * 3, [0.0] * 3, True)
    assert ctl.done
    for d in ds:  # each sample's second turn goes where its first ran (its prefix is cached there)
        req = ctl.add_request(0, 20, 8, engine=d.engine_id)
        (nd,) = ctl.next_dispatches()
        assert nd.req_id == req.req_id and nd.engine_id == d.engine_id
        ctl.complete(nd, [2], [0.0], True)
    assert ctl.done and len(ctl.results()) == 4


def test_a_turn_that_cannot_fit_is_rejected_without_changing_anything():
    ctl = RolloutController(RequestBuffer.from_rows([(0, 10)], 8), [EngineState(0, 64, 16)], SeerConfig())
    with pytest.raises(NoEngineError, match="prompt 60 \\+ max_tokens 8"):
        ctl.add_request(0, 60, 8)
    with pytest.raises(ValueError, match="max_tokens of request 1"):
        ctl.add_request(0, 10, 0)
    assert len(ctl.buffer) == 1 and ctl.num_unfinished == 1 and ctl.num_waiting == 1


def test_a_later_turn_ranks_by_its_siblings_learnt_length():
    # seer policy, one chunk at a time: group 0 learnt a length of 3, group 1 one of 40; a later turn of each joins
    # the rollout while group 1's probe runs: group 1's turn is served first (approximate longest-first)
    cfg = SeerConfig(chunk_size=64, max_inflight_per_engine=1)
    ctl = RolloutController(RequestBuffer.from_rows([(0, 5), (1, 5), (1, 5)], 50), [EngineState(0, 10_000, 16)], cfg)
    (d,) = ctl.next_dispatches()
    assert d.req_id == 0  # probes first, in order
    ctl.complete(d, [1] * 3, [0.0] * 3, True)
    (d,) = ctl.next_dispatches()
    assert d.req_id == 1
    late0 = ctl.add_request(0, 12, 50, engine=0)
    late1 = ctl.add_request(1, 12, 50, engine=0)
    ctl.complete(d, [1] * 40, [0.0] * 40, True)
    order = []
    while not ctl.done:
        (d,) = ctl.next_dispatches()
        order.append(d.req_id)
        ctl.complete(d, [1], [0.0], True)
    assert order == [2, late1.req_id, late0.req_id]
