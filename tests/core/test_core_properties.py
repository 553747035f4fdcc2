"""Property tests: whole rollouts with random groups, lengths, capacities, chunk sizes, completion
orders, EOS points and engine failures, checked step by step by ``seer_core_sim.drive``.

Properties (all checked inside ``drive`` against the driver's own model of the rollout):
every request finishes exactly once with exactly its true length and tokens; each chunk's budget is
``min(chunk_size, remaining)`` and no chunk returns more; reserved KV never exceeds capacity and
always equals the footprints of the chunks in flight; no request is passed over more than
``starvation_bound`` + (requests already waiting when it started waiting) decisions; results come
back in req_id order; seer dispatches waiting probes before non-probes; oracle serves longest first.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from seer_core_sim import drive

from seer_verl.core import POLICY_NAMES, EngineState, RequestBuffer, SeerConfig, kv_footprint

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def rollouts(draw, policies=POLICY_NAMES, failures: bool = False, bounds=None):
    n_groups = draw(st.integers(1, 6))
    group_size = draw(st.integers(1, 5))
    max_tokens = draw(st.integers(1, 40))
    chunk_size = draw(st.integers(1, 24))
    prompt_lens = draw(st.lists(st.integers(0, 30), min_size=n_groups, max_size=n_groups))
    rows = [(g, prompt_lens[g]) for g in range(n_groups) for _ in range(group_size)]
    rows = draw(st.permutations(rows))  # rows of a group need not be adjacent
    true_lens = draw(st.lists(st.integers(1, max_tokens + 8), min_size=len(rows), max_size=len(rows)))
    buffer = RequestBuffer.from_rows(rows, max_tokens, true_lens)
    n_engines = draw(st.integers(2 if failures else 1, 4))
    blocks = [draw(st.sampled_from((1, 4, 16))) for _ in range(n_engines)]
    need = max(p for _, p in rows) + max_tokens
    engines = []
    for e in range(n_engines):
        if e == 0:  # engine 0 can always hold any single request and never fails
            cap = kv_footprint(need, blocks[e]) + draw(st.integers(0, 3 * need))
        else:
            cap = draw(st.integers(0, 3 * need))
        engines.append(EngineState(e, capacity_tokens=cap, block_size=blocks[e]))
    config = SeerConfig(
        policy=draw(st.sampled_from(policies)),
        chunk_size=chunk_size,
        affinity_threshold=draw(st.integers(0, 3)),
        starvation_bound=draw(bounds if bounds is not None else st.one_of(st.none(), st.integers(0, 12))),
        max_inflight_per_engine=draw(st.one_of(st.none(), st.integers(1, 4))),
        lookahead=draw(st.integers(1, 4)),
        kv_reserve=draw(st.sampled_from((1.0, "auto"))),
    )
    seed = draw(st.integers(0, 2**32 - 1))
    return buffer, engines, config, seed


@SETTINGS
@given(rollouts())
def test_random_rollouts_satisfy_all_invariants(case):
    buffer, engines, config, seed = case
    drive(buffer, engines, config, seed)


@SETTINGS
@given(rollouts(failures=True), st.floats(0.05, 0.5))
def test_random_rollouts_with_engine_failures(case, fail_prob):
    buffer, engines, config, seed = case
    victims = tuple(e.engine_id for e in engines if e.engine_id != 0)
    rep = drive(buffer, engines, config, seed, fail_engines=victims, fail_prob=fail_prob)
    m = rep.controller.metrics
    assert m["engine_failures"] == len(rep.failed_engines)
    assert m["requests_redispatched"] == m["chunks_discarded"]
    # every discarded chunk was redone: dispatched chunks = completed + discarded
    assert m["dispatches"] == m["chunks_completed"] + m["chunks_discarded"]


@settings(max_examples=60, deadline=None)
@given(rollouts(policies=("seer",), bounds=st.integers(0, 3)))
def test_tight_starvation_bound_holds_for_seer(case):
    buffer, engines, config, seed = case
    rep = drive(buffer, engines, config, seed)
    assert rep.controller.metrics["max_passed_over"] == rep.max_passed_over


def test_starvation_bound_is_binding_in_a_long_tail_rollout():
    # One long group keeps cycling through 1-token chunks; a short group waits behind it under seer.
    # With a small bound the short requests must get served early; drive() checks the bound.
    rows = [(0, 0)] * 4 + [(1, 0)] * 4
    true_lens = [60, 60, 60, 60, 2, 2, 2, 2]
    for bound in (0, 1, 3, 8):
        buffer = RequestBuffer.from_rows(rows, 60, true_lens)
        # group 1's probe finishes first so its estimate (2) ranks its siblings below group 0's (60)
        engines = [EngineState(0, capacity_tokens=64 * 2, block_size=1)]
        rep = drive(buffer, engines, SeerConfig(policy="seer", chunk_size=1, starvation_bound=bound), seed=bound)
        assert rep.max_passed_over <= bound + 7
        if bound <= 3:
            assert rep.controller.metrics["starvation_picks"] > 0


@pytest.mark.parametrize("continuation", ["first", "policy"])
@pytest.mark.parametrize("policy", POLICY_NAMES)
@pytest.mark.parametrize("seed", [1, 2])
def test_larger_seeded_rollouts_under_kv_pressure_with_failures(policy, seed, continuation):
    """~100 requests, long-tailed lengths, 4 engines under KV pressure, two of them failing."""
    rng = random.Random(seed)
    rows, true_lens = [], []
    for g in range(12):
        scale = rng.choice((0.1, 0.3, 1.0, 1.3))
        for _ in range(8):
            rows.append((g, rng.randint(4, 40)))
            true_lens.append(max(1, int(scale * rng.uniform(20, 160))))
    order = list(range(len(rows)))
    rng.shuffle(order)
    buffer = RequestBuffer.from_rows([rows[i] for i in order], 160, [true_lens[i] for i in order])
    engines = [EngineState(0, 400, 16), EngineState(1, 700, 16), EngineState(2, 300, 4), EngineState(3, 250, 1)]
    config = SeerConfig(policy=policy, chunk_size=32, affinity_threshold=2, starvation_bound=40, lookahead=8,
                        continuation=continuation)
    rep = drive(buffer, engines, config, seed, fail_engines=(2, 3), fail_prob=0.05)
    m = rep.controller.metrics
    # continuation-first: continuations happen and each follows its own chunk (drive() checks the order);
    # the paper's loop (policy) has none and keeps every invariant, starvation bound and priority order included
    assert (m["continuations"] > 0) == (continuation == "first")
    assert rep.failed_engines and m["engine_failures"] == len(rep.failed_engines)
    assert m["hol_skips"] > 0  # KV pressure was real
    assert m["affinity_hits"] > 0
    assert max(m["peak_reserved_tokens"].values()) > 200
