"""Unit tests of seer_verl.core.controller (dispatch life cycle, failures, metrics)."""

from __future__ import annotations

import ast
import pathlib
import sys

import pytest

from seer_verl.core import (
    ChunkError,
    EngineState,
    NoEngineError,
    RequestBuffer,
    RolloutController,
    SeerConfig,
    StaleDispatchError,
)


def ctrl(rows, max_tokens, engines, **cfg):
    buf = RequestBuffer.from_rows(rows, max_tokens, cfg.pop("true_lens", None))
    return RolloutController(buf, engines, SeerConfig(**{"kv_reserve": 1.0, **cfg}))


def test_chunked_request_round_trip_with_affinity_and_results_in_row_order():
    c = ctrl([(0, 4), (0, 4)], 5, [EngineState(0, 1000, 1), EngineState(1, 1000, 1)], chunk_size=3)
    first = c.next_dispatches()
    assert [(d.req_id, d.engine_id, d.max_tokens, d.context_len, d.chunk_index) for d in first] == [
        (0, 0, 3, 4, 0),
        (1, 1, 3, 4, 0),
    ]
    assert first[0].is_probe and not first[1].is_probe
    assert [d.reserved_tokens for d in first] == [7, 7]
    c.complete(first[1], [1, 2, 3], [0.0] * 3, False)
    (d,) = c.next_dispatches()
    assert (d.req_id, d.engine_id, d.max_tokens, d.context_len, d.chunk_index) == (1, 1, 2, 7, 1)
    r = c.complete(d, [4, 5], [0.0, 0.0], False)
    assert r.finished and r.finish_reason == "length" and r.token_ids == [1, 2, 3, 4, 5]
    with pytest.raises(RuntimeError, match="not done: 1 of 2"):
        c.results()
    c.complete(first[0], [9], [-1.0], True)
    assert c.done and c.next_dispatches() == []
    assert [(r.req_id, r.token_ids, r.finish_reason) for r in c.results()] == [
        (0, [9], "stop"),
        (1, [1, 2, 3, 4, 5], "length"),
    ]
    m = c.metrics
    assert (m["dispatches"], m["chunks_completed"], m["affinity_hits"], m["first_placements"]) == (3, 3, 1, 2)
    assert m["probe_dispatches"] == 1 and m["tokens_generated"] == 6
    assert m["finished_stop"] == 1 and m["finished_length"] == 1
    assert m["peak_reserved_tokens"] == {0: 7, 1: 9} and m["peak_inflight"] == {0: 1, 1: 1}
    assert c.placement.engine(0).reserved_tokens == 0 and c.placement.engine(1).inflight == 0


def test_null_chunk_size_is_resolved_from_the_smallest_alive_engine_and_the_longest_budget():
    from seer_verl.core import auto_chunk_size

    engines = [EngineState(0, 11264, 128), EngineState(1, 5632, 128), EngineState(2, 1408, 128, alive=False)]
    c = ctrl([(0, 100)] * 4, [300, 1024, 200, 50], engines, chunk_size=None)
    assert c.chunk_size == auto_chunk_size(5632, 1024) == 128
    budgets = sorted(d.max_tokens for d in c.next_dispatches())
    assert budgets == [50, 128, 128, 128]
    # the smallest alive engine's block is the floor under kv_reserve auto: 1,408 tokens alone would give 32
    small = [EngineState(0, 1408, 128), EngineState(1, 1408, 16, alive=False)]
    assert ctrl([(0, 100)], [1024], small, chunk_size=None, kv_reserve="auto").chunk_size == 128
    assert ctrl([(0, 100)], [1024], small, chunk_size=None).chunk_size == auto_chunk_size(1408, 1024) == 32
    fresh = [EngineState(0, 5632, 128)]
    assert ctrl([(0, 100)], 1024, fresh, chunk_size=300).chunk_size == 300  # an explicit size is kept


def test_request_that_fits_nowhere_now_waits_without_blocking_smaller_ones():
    # engine fits 30 tokens; req 0 needs 20 (prompt 10 + 10), req 1 needs 20, req 2 needs 8.
    rows = [(0, 10), (1, 10), (2, 2)]
    c = ctrl(rows, [10, 10, 6], [EngineState(0, 30, 1)], policy="divided", chunk_size=10)
    ds = c.next_dispatches()
    assert [d.req_id for d in ds] == [0, 2]
    assert c.metrics["hol_skips"] == 1 and c.num_waiting == 1
    assert c.placement.engine(0).reserved_tokens == 28
    c.complete(ds[1], [1] * 6, [0.0] * 6, False)
    assert c.next_dispatches() == []  # 20 free? no: 30 - 20 = 10 < 20
    c.complete(ds[0], [1] * 10, [0.0] * 10, False)
    assert [d.req_id for d in c.next_dispatches()] == [1]


def test_lookahead_bounds_the_skips_per_call():
    rows = [(g, 50) for g in range(5)] + [(9, 1)]
    c = ctrl(rows, 10, [EngineState(0, 61, 1)], policy="divided", chunk_size=10, lookahead=2)
    (d0,) = c.next_dispatches()  # req 0 (60) fits; reqs 1 and 2 skipped; req 5 never reached
    assert d0.req_id == 0 and c.metrics["hol_skips"] == 2
    c2 = ctrl(rows, 10, [EngineState(0, 61, 1)], policy="divided", chunk_size=10, lookahead=5)
    assert [d.req_id for d in c2.next_dispatches()] == [0]  # 1 free token: nothing else fits


def test_starved_request_that_does_not_fit_blocks_the_call():
    # req 0 is large; under seer, group 1 (short estimate) would keep overtaking it with bound None.
    rows = [(0, 10), (1, 1), (1, 1), (1, 1)]
    engines = [EngineState(0, 22, 1)]
    c = ctrl(rows, 10, engines, policy="divided", chunk_size=10, starvation_bound=0)
    ds = c.next_dispatches()
    assert [d.req_id for d in ds] == [0]  # bound 0 = FCFS, req 1 (11 tokens) no longer fits -> blocks
    assert all(d.starvation_pick for d in ds)
    assert c.metrics["starvation_blocks"] == 1 and c.metrics["hol_skips"] == 0


def test_max_dispatches_limits_a_call():
    c = ctrl([(0, 1)] * 5, 4, [EngineState(0, 1000, 1)], chunk_size=4)
    assert len(c.next_dispatches(max_dispatches=2)) == 2
    assert c.next_dispatches(max_dispatches=0) == []
    assert len(c.next_dispatches()) == 3


def test_max_inflight_per_engine_caps_concurrency():
    c = ctrl([(0, 1)] * 5, 4, [EngineState(0, 1000, 1), EngineState(1, 1000, 1)], max_inflight_per_engine=2)
    ds = c.next_dispatches()
    assert len(ds) == 4 and sorted(d.engine_id for d in ds) == [0, 0, 1, 1]


def test_bad_chunk_result_is_rejected_and_dispatch_stays_live():
    c = ctrl([(0, 1)], 10, [EngineState(0, 100, 1)], chunk_size=4)
    (d,) = c.next_dispatches()
    with pytest.raises(ChunkError, match="returned 5 tokens for a chunk budget of 4"):
        c.complete(d, [1] * 5, [0.0] * 5, False)
    assert c.is_live(d) and c.placement.engine(0).reserved_tokens == 5
    c.complete(d, [1] * 4, [0.0] * 4, False)
    assert not c.is_live(d)
    with pytest.raises(StaleDispatchError, match="not in flight"):
        c.complete(d, [1] * 4, [0.0] * 4, False)


def test_engine_failure_requeues_in_flight_requests_from_their_last_chunk():
    engines = [EngineState(0, 100, 1), EngineState(1, 100, 1)]
    c = ctrl([(0, 2), (0, 2)], 6, engines, chunk_size=3)
    a, b = c.next_dispatches()
    assert (a.engine_id, b.engine_id) == (0, 1)
    c.complete(b, [1, 2, 3], [0.0] * 3, False)
    (b2,) = c.next_dispatches()
    assert b2.engine_id == 1 and c.request(1).engine == 1
    assert c.inflight_dispatch(1) == b2
    assert c.fail_engine(1) == [1]
    assert c.fail_engine(1) == []  # idempotent
    r = c.request(1)
    assert r.engine is None and r.token_ids == [1, 2, 3] and c.num_waiting == 1
    assert not c.is_live(b2) and c.inflight_dispatch(1) is None
    with pytest.raises(StaleDispatchError):
        c.complete(b2, [4, 5, 6], [0.0] * 3, False)
    (b3,) = c.next_dispatches()
    assert (b3.req_id, b3.engine_id, b3.context_len, b3.max_tokens, b3.chunk_index) == (1, 0, 5, 3, 1)
    m = c.metrics
    assert (m["engine_failures"], m["requests_redispatched"], m["chunks_discarded"]) == (1, 1, 1)
    assert m["affinity_misses"] == 0 and m["first_placements"] == 3
    c.complete(b3, [4, 5, 6], [0.0] * 3, False)
    c.complete(a, [7], [0.0], True)
    assert c.done and c.results()[1].token_ids == [1, 2, 3, 4, 5, 6]


def test_failing_every_engine_or_the_only_big_one_raises_no_engine_error():
    c = ctrl([(0, 50)], 50, [EngineState(0, 100, 1), EngineState(1, 60, 1)], chunk_size=10)
    c.next_dispatches()
    with pytest.raises(NoEngineError, match=r"can never fit.*req 0 \(prompt 50 \+ max_tokens 50\)"):
        c.fail_engine(0)
    c2 = ctrl([(0, 5)], 5, [EngineState(0, 100, 1)])
    with pytest.raises(NoEngineError, match="all 1 engines are dead"):
        c2.fail_engine(0)


def test_infeasible_rollouts_and_dirty_engines_are_rejected_at_construction():
    with pytest.raises(NoEngineError, match="engine 0: 99 tokens"):
        ctrl([(0, 50)], 50, [EngineState(0, 99, 1)])
    with pytest.raises(NoEngineError, match="block 16"):
        ctrl([(0, 50)], 50, [EngineState(0, 100, 16)])  # 100 tokens -> 112 with blocks of 16
    with pytest.raises(ValueError, match="must start with nothing reserved"):
        ctrl([(0, 5)], 5, [EngineState(0, 100, 1, reserved_tokens=4)])
    with pytest.raises(ValueError, match="seer.chunk_size"):
        ctrl([(0, 5)], 5, [EngineState(0, 100, 1)], chunk_size=0)
    with pytest.raises(ValueError, match="oracle"):
        ctrl([(0, 5)], 5, [EngineState(0, 100, 1)], policy="oracle")


def test_seer_policy_dispatches_probes_first_and_learns_group_lengths():
    # 2 groups of 3; one engine slot at a time.
    rows = [(0, 1)] * 3 + [(1, 1)] * 3
    c = ctrl(rows, 20, [EngineState(0, 1000, 1)], chunk_size=20, max_inflight_per_engine=1)
    (p0,) = c.next_dispatches()
    assert p0.req_id == 0 and p0.is_probe
    c.complete(p0, [1] * 4, [0.0] * 4, True)  # group 0 finishes short: estimate 4
    (p1,) = c.next_dispatches()
    assert p1.req_id == 3 and p1.is_probe
    c.complete(p1, [1] * 9, [0.0] * 9, True)  # group 1: estimate 9 -> served before group 0
    order = []
    while not c.done:
        (d,) = c.next_dispatches()
        order.append(d.req_id)
        c.complete(d, [1], [0.0], True)
    assert order == [4, 5, 1, 2]
    assert c.policy.estimator.estimate(0) == 4 and c.policy.estimator.estimate(1) == 9


def test_core_imports_only_the_standard_library():
    root = pathlib.Path(__file__).resolve().parents[2] / "seer_verl" / "core"
    files = sorted(root.rglob("*.py"))
    assert len(files) >= 10
    for f in files:
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level > 0:
                    continue
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top == "__future__", f"{f.name} imports {name}"
