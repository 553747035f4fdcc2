"""Randomized fault injection on the core controller, driven the way the Seer service drives it.

An event-driven simulation: every chunk takes a random time on its engine; engines fail at random moments (early,
while chunks run, or in the tail when few requests are left), possibly all of them. As in the service, a failure
is reported once per engine (:meth:`RolloutController.fail_engine`), the chunks that were running there still
"answer" later (late results must be refused), and a request's caller gets its result the moment it finishes.

Checked on every run: each request is delivered exactly once, with exactly the tokens an uninterrupted generation
would give (token ``p`` of request ``r`` is a function of ``(r, p)`` only, so a resume that skipped, repeated or
lost a token would show), results come back in row order, KV reservations stay consistent, and the failure
counters match the events. When every engine is lost the controller raises :class:`NoEngineError` (the service
turns it into a clear error) and its state stays consistent.
"""

from __future__ import annotations

import heapq
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from seer_core_sim import engine_output, expected_len, expected_reason, logprob_at, reserved_kv, token_at

from seer_verl.core import (
    POLICY_NAMES,
    EngineState,
    NoEngineError,
    RequestBuffer,
    RolloutController,
    SeerConfig,
    StaleDispatchError,
    kv_footprint,
)

RUNS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run_with_faults(buffer, engines, config, seed, failures):
    """Drive a rollout to completion or to NoEngineError.

    ``failures``: per engine, None (never fails), ``("t", time)`` (fails at that simulated time) or
    ``("tail", k)`` (fails once only ``k`` requests are unfinished); the key ``"busiest"`` with ``("tail", k)``
    fails whichever engine runs the most chunks at that moment. Returns ``(controller, delivered, error,
    failed, late_refused)``.
    """
    rng = random.Random(seed)
    ctl = RolloutController(buffer, engines, config)
    n = len(buffer)
    true_len = {r.req_id: r.true_len for r in buffer}
    delivered: dict[int, list[int]] = {}
    failed: list[int] = []
    late_refused = 0
    now = 0.0
    events: list[tuple[float, int, str, object]] = []  # (time, seq, kind, payload)
    seq = 0
    pending_tail = {e: k for e, f in failures.items() if f is not None and f[0] == "tail" for k in [f[1]]}
    for e, f in failures.items():
        if f is not None and f[0] == "t":
            heapq.heappush(events, (f[1], seq, "fail", e))
            seq += 1
    gen = dict.fromkeys(range(n), 0)
    error: NoEngineError | None = None

    def check_kv() -> None:
        tokens = {e.engine_id: reserved_kv([d for d in ctl.inflight() if d.engine_id == e.engine_id], buffer, e,
                                           config.share_prompt_kv, ctl.placement.growth_share)
                  for e in ctl.placement.engines}
        for e in ctl.placement.engines:
            assert e.reserved_tokens == (tokens[e.engine_id] if e.alive else 0)
            if config.continuation == "policy":  # "auto" switching its reserve on may count more growth than fits
                assert (e.context_tokens if config.kv_reserve == "auto" else e.reserved_tokens) <= e.capacity_tokens

    def fail(e: int) -> None:
        nonlocal error
        if not ctl.placement.engine(e).alive:
            return
        running_there = [d.req_id for d in ctl.inflight() if d.engine_id == e]
        failed.append(e)
        try:
            requeued = ctl.fail_engine(e)
        except NoEngineError as exc:
            error = exc
            return
        assert requeued == running_there
        assert ctl.fail_engine(e) == []  # a second report of the same loss changes nothing

    steps = 0
    while not ctl.done and error is None:
        steps += 1
        assert steps < 100_000, "rollout does not terminate"
        for e, k in list(pending_tail.items()):
            if ctl.num_unfinished <= k:
                del pending_tail[e]
                if e == "busiest":
                    loads = [(sum(d.engine_id == x.engine_id for d in ctl.inflight()), x.engine_id)
                             for x in ctl.placement.engines if x.alive]
                    e = max(loads)[1]
                fail(e)
        if error is not None:
            break
        for d in ctl.next_dispatches():
            assert ctl.placement.engine(d.engine_id).alive
            assert d.context_len == buffer[d.req_id].prompt_len + gen[d.req_id]  # resumes at its last chunk
            heapq.heappush(events, (now + rng.uniform(0.1, 2.0) * d.max_tokens, seq, "chunk", d))
            seq += 1
        check_kv()
        assert events, "nothing in flight and nothing scheduled, yet requests remain"
        now, _, kind, payload = heapq.heappop(events)
        if kind == "fail":
            fail(payload)  # type: ignore[arg-type]
            continue
        d = payload
        toks, lps, stop = engine_output(d.req_id, gen[d.req_id], d.max_tokens, true_len[d.req_id])
        if not ctl.is_live(d):  # its engine was lost while it ran: the service drops the late answer
            with pytest.raises(StaleDispatchError):
                ctl.complete(d, toks, lps, stop)
            late_refused += 1
            continue
        req = ctl.complete(d, toks, lps, stop)
        gen[d.req_id] += len(toks)
        if req.finished:
            assert d.req_id not in delivered, f"request {d.req_id} delivered twice"
            delivered[d.req_id] = list(req.token_ids)
    if error is None:
        check_kv()
        while events:  # chunks still running on lost engines answer after the rollout ended: refused
            _, _, kind, d = heapq.heappop(events)
            if kind == "chunk":
                assert not ctl.is_live(d)
                late_refused += 1
    return ctl, delivered, error, failed, late_refused


@st.composite
def fault_cases(draw, all_fail: bool = False):
    n_groups = draw(st.integers(1, 5))
    group_size = draw(st.integers(1, 5))
    max_tokens = draw(st.integers(1, 48))
    rows = [(g, draw(st.integers(1, 24))) for g in range(n_groups) for _ in range(group_size)]
    rows = draw(st.permutations(rows))
    true_lens = draw(st.lists(st.integers(1, max_tokens + 8), min_size=len(rows), max_size=len(rows)))
    buffer = RequestBuffer.from_rows(rows, max_tokens, true_lens)
    n_engines = draw(st.integers(1 if all_fail else 2, 4))
    need = max(p for _, p in rows) + max_tokens
    engines = []
    for e in range(n_engines):
        block = draw(st.sampled_from((1, 4, 16)))
        # every engine can hold any single request, so a loss is survivable while one engine is left
        cap = kv_footprint(need, block) + draw(st.integers(0, 3 * need))
        engines.append(EngineState(e, capacity_tokens=cap, block_size=block))
    failure = st.one_of(
        st.tuples(st.just("t"), st.floats(0.0, 400.0)),  # at a random time: early or mid-rollout
        st.tuples(st.just("tail"), st.integers(1, 3)),  # in the tail: once only 1-3 requests are unfinished
    )
    survivor = None if all_fail else draw(st.integers(0, n_engines - 1))
    failures = {e.engine_id: (None if e.engine_id == survivor else draw(failure)) for e in engines}
    if not all_fail and n_engines > 1 and all(f is None for f in failures.values()):
        failures[(survivor + 1) % n_engines] = ("t", 0.0)
    config = SeerConfig(
        policy=draw(st.sampled_from(POLICY_NAMES)),
        chunk_size=draw(st.integers(1, 20)),
        affinity_threshold=draw(st.integers(0, 3)),
        starvation_bound=draw(st.one_of(st.none(), st.integers(0, 10))),
        max_inflight_per_engine=draw(st.one_of(st.none(), st.integers(1, 4))),
        lookahead=draw(st.integers(1, 4)),
        chunk_align=draw(st.sampled_from((0, 4))),
        kv_reserve=draw(st.sampled_from((1.0, "auto"))),
    )
    return buffer, engines, config, draw(st.integers(0, 2**32 - 1)), failures


def _check_delivery(buffer, delivered, chunk_align_on: bool) -> None:
    for rid, toks in delivered.items():
        r = buffer[rid]
        L = expected_len(r.true_len, r.max_tokens)
        assert toks == [token_at(rid, p) for p in range(L)], f"request {rid}: tokens differ from an uninterrupted run"
        assert r.log_probs == [logprob_at(rid, p) for p in range(L)]
        assert r.finish_reason == expected_reason(r.true_len, r.max_tokens)


@RUNS
@given(fault_cases())
def test_random_engine_losses_with_a_survivor_deliver_every_request_exactly_once_in_order(case):
    buffer, engines, config, seed, failures = case
    ctl, delivered, error, failed, late = run_with_faults(buffer, engines, config, seed, failures)
    assert error is None, f"a survivor was left, yet: {error}"
    assert ctl.done and sorted(delivered) == list(range(len(buffer)))
    assert [r.req_id for r in ctl.results()] == list(range(len(buffer)))
    _check_delivery(buffer, delivered, bool(config.chunk_align))
    m = ctl.metrics
    assert m["engine_failures"] == len(failed)
    assert m["requests_redispatched"] == m["chunks_discarded"] == late  # every lost chunk answered late, refused
    assert m["dispatches"] == m["chunks_completed"] + m["chunks_discarded"]
    assert m["requests_finished"] == len(buffer)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fault_cases(all_fail=True))
def test_losing_every_engine_raises_no_engine_error_and_never_delivers_twice(case):
    buffer, engines, config, seed, failures = case
    ctl, delivered, error, failed, _ = run_with_faults(buffer, engines, config, seed, failures)
    _check_delivery(buffer, delivered, bool(config.chunk_align))
    if error is None:  # the rollout finished before the last engine went
        assert ctl.done and sorted(delivered) == list(range(len(buffer)))
        assert len(failed) < len(engines)
        return
    assert len(failed) == len(engines)
    assert "all" in str(error) and "engines are dead" in str(error)
    assert not ctl.done and len(delivered) < len(buffer)
    assert all(not e.alive and e.reserved_tokens == 0 for e in ctl.placement.engines)
    assert ctl.num_inflight == 0  # nothing is left running on a dead engine
    with pytest.raises(RuntimeError, match="not done"):
        ctl.results()


@pytest.mark.parametrize("phase", ["early", "mid", "tail"])
def test_seeded_loss_phases_on_a_long_tailed_rollout(phase):
    """48 requests, long tail; one engine of 3 fails at the start, half-way, or with 2 requests left (the engine
    running the most chunks then)."""
    rng = random.Random(7)
    rows = [(g, rng.randint(4, 30)) for g in range(6) for _ in range(8)]
    true_lens = [max(1, int(rng.choice((0.1, 0.3, 1.0)) * rng.uniform(20, 120))) for _ in rows]
    buffer = RequestBuffer.from_rows(rows, 120, true_lens)
    engines = [EngineState(e, 600, 16) for e in range(3)]
    failures = {"early": {1: ("t", 0.0)}, "mid": {1: ("tail", 24)}, "tail": {"busiest": ("tail", 2)}}[phase]
    ctl, delivered, error, failed, late = run_with_faults(
        buffer, engines, SeerConfig(chunk_size=16, lookahead=8), seed=3, failures=failures
    )
    assert error is None and len(failed) == 1
    assert sorted(delivered) == list(range(48))
    _check_delivery(buffer, delivered, False)
    assert ctl.metrics["engine_failures"] == 1
    assert ctl.metrics["requests_redispatched"] == late
    if phase != "early":  # chunks were running there when it failed
        assert late > 0
