"""A deterministic fake inference engine and rollout driver for the seer_verl.core tests.

Each request has a true EOS position ``true_len``: the engine emits ``token_at(req_id, pos)`` for
positions ``generated .. generated + k - 1`` with ``k = min(chunk budget, true_len - generated)`` and
reports ``stopped`` when it emitted the EOS position. A request with ``true_len > max_tokens`` is
therefore truncated at ``max_tokens`` ("length").

:func:`drive` runs a whole rollout through a RolloutController in a random (seeded) completion
order, optionally failing engines, and checks the controller against an independent model of the
rollout after every step. Every assertion compares the controller with quantities the driver
computes itself (its own count of generated tokens, its own waiting set, its own KV sums).
"""

from __future__ import annotations

import math

import random
from dataclasses import dataclass, field

from seer_verl.core import (
    Dispatch,
    EngineState,
    RequestBuffer,
    RolloutController,
    SeerConfig,
    StaleDispatchError,
    kv_footprint,
)


def reserved_kv(chunks, buffer, engine, share: bool = True, growth_share: float = 1.0) -> int:
    """KV an engine must count for ``chunks`` (its in-flight dispatches), computed independently of placement: each
    chunk's block-rounded context plus ``growth_share`` of its block-rounded growth to its end (1: the whole end
    footprint), less, per group, the full blocks of the group's prompt (the prompt of its
    first request in ``buffer``) for every chunk of the group on the engine but one (siblings whose prompt is at
    least that long share it in vLLM's prefix cache)."""
    bs = engine.block_size
    group_prompt: dict[int, int] = {}
    for r in buffer.requests:
        group_prompt.setdefault(r.group_id, r.prompt_len)
    total = growth = 0
    sharing: dict[int, int] = {}
    for d in chunks:
        base = kv_footprint(d.context_len, bs)
        total += base
        growth += kv_footprint(d.context_len + d.max_tokens, bs) - base
        req = buffer[d.req_id]
        if share and req.prompt_len >= group_prompt[req.group_id]:
            sharing[req.group_id] = sharing.get(req.group_id, 0) + 1
    total += growth if growth_share == 1.0 else math.ceil(growth_share * growth)
    return total - sum((n - 1) * (group_prompt[g] // bs) * bs for g, n in sharing.items())


def token_at(req_id: int, pos: int) -> int:
    return (req_id * 1_000_003 + pos * 7_919) % 50_021


def logprob_at(req_id: int, pos: int) -> float:
    return -((req_id * 31 + pos) % 97) / 10.0


def expected_len(true_len: int, max_tokens: int) -> int:
    return min(true_len, max_tokens)


def expected_reason(true_len: int, max_tokens: int) -> str:
    return "stop" if true_len <= max_tokens else "length"


def engine_output(req_id: int, generated: int, budget: int, true_len: int) -> tuple[list[int], list[float], bool]:
    k = min(budget, true_len - generated)
    toks = [token_at(req_id, p) for p in range(generated, generated + k)]
    lps = [logprob_at(req_id, p) for p in range(generated, generated + k)]
    return toks, lps, generated + k == true_len


@dataclass
class DriveReport:
    controller: RolloutController
    dispatches: list[Dispatch] = field(default_factory=list)
    calls: list[list[Dispatch]] = field(default_factory=list)
    max_passed_over: int = 0
    failed_engines: list[int] = field(default_factory=list)
    stale_checked: int = 0


def _fits_now(ctrl: RolloutController, context_end: int) -> bool:
    cap = ctrl.config.max_inflight_per_engine
    for e in ctrl.placement.engines:
        if not e.alive or (cap is not None and e.inflight >= cap):
            continue
        if kv_footprint(context_end, e.block_size) <= e.capacity_tokens - e.reserved_tokens:
            return True
    return False


def drive(
    buffer: RequestBuffer,
    engines: list[EngineState],
    config: SeerConfig,
    seed: int,
    fail_engines: tuple[int, ...] = (),
    fail_prob: float = 0.0,
    check_priority: bool = True,
) -> DriveReport:
    """Run the rollout to completion, checking invariants after every step."""
    rng = random.Random(seed)
    ctrl = RolloutController(buffer, engines, config)
    rep = DriveReport(ctrl)
    cs = ctrl.chunk_size
    bound = config.effective_starvation_bound(len(buffer))
    n = len(buffer)
    true_len = {r.req_id: r.true_len for r in buffer}
    max_tok = {r.req_id: r.max_tokens for r in buffer}
    prompt = {r.req_id: r.prompt_len for r in buffer}
    gen = dict.fromkeys(range(n), 0)  # the driver's own count of accepted tokens
    finished: set[int] = set()
    inflight: dict[int, Dispatch] = {}  # dispatch_id -> dispatch, the driver's view
    running: set[int] = set()  # req_ids of inflight
    waiting: dict[int, tuple[int, int]] = {}  # req_id -> (decisions at entry, older waiting at entry)
    decisions = 0
    clock = 0  # dispatches of waiting requests (the anti-starvation safeguard's clock)
    for rid in range(n):
        waiting[rid] = (0, len(waiting))
    to_fail = list(fail_engines)
    steps = 0

    blocks = {e.engine_id: e.block_size for e in ctrl.placement.engines}

    warm_first = config.continuation == "first"
    last_engine: dict[int, int] = {}  # req_id -> engine of its last completed chunk

    def check_engines(cold: set[int] | None = None) -> None:
        """Exact KV accounting; no over-commit except by a request continuing on its own engine (then no cold
        chunk lands there until it drains below capacity)."""
        count = dict.fromkeys(blocks, 0)
        for d in inflight.values():
            count[d.engine_id] += 1
        share = ctrl.placement.growth_share
        if config.kv_reserve == "auto":
            assert share in (0.0, 1.0)
        else:
            assert share == config.kv_reserve
        tokens = {e.engine_id: reserved_kv([d for d in inflight.values() if d.engine_id == e.engine_id], buffer, e,
                                           config.share_prompt_kv, share)
                  for e in ctrl.placement.engines}
        for e in ctrl.placement.engines:
            # continuation-first may over-commit the growth (a continuing request's expected KV fits, or it started
            # before a chunk running there, which yields), never the contexts
            assert e.context_tokens <= e.capacity_tokens, (e, "contexts over-committed")
            if cold is not None and e.engine_id in cold:
                assert e.reserved_tokens <= e.capacity_tokens, (e, "over-committed by a new chunk")
            elif not warm_first:
                # kv_reserve="auto" switching its reserve on may count more growth than the KV holds (no chunk lands
                # there until it drains); the contexts themselves are never over-committed
                used = e.context_tokens if config.kv_reserve == "auto" else e.reserved_tokens
                assert used <= e.capacity_tokens, (e, "over-committed")
            if not e.alive:
                assert count[e.engine_id] == 0 and e.reserved_tokens == 0 and e.inflight == 0
                continue
            assert e.reserved_tokens == tokens[e.engine_id], (e, tokens[e.engine_id])
            assert e.inflight == count[e.engine_id]
            if config.max_inflight_per_engine is not None:
                assert e.inflight <= config.max_inflight_per_engine

    while True:
        steps += 1
        assert steps < 200_000, "rollout does not terminate"
        new = ctrl.next_dispatches()
        rep.calls.append(new)
        cold_engines: set[int] = set()
        n_warm = 0
        for d in new:
            rid = d.req_id
            if d.continuation:
                assert warm_first and d.chunk_index > 0 and rid in last_engine
                assert n_warm == new.index(d), ("continuations come before new chunks", d, new)
                n_warm += 1
            else:
                cold_engines.add(d.engine_id)
            assert rid not in finished, f"finished request {rid} dispatched again"
            assert rid in waiting, f"request {rid} dispatched while not waiting"
            assert rid not in running, f"request {rid} dispatched twice"
            running.add(rid)
            assert d.max_tokens == min(cs, max_tok[rid] - gen[rid]), (d, gen[rid])
            assert d.context_len == prompt[rid] + gen[rid]
            assert ctrl.placement.engine(d.engine_id).alive
            entered, older = waiting.pop(rid)
            passed = clock - entered
            rep.max_passed_over = max(rep.max_passed_over, passed)
            assert passed <= bound + older, (
                f"request {rid} passed over {passed} times; bound {bound} + {older} older waiting"
            )
            decisions += 1
            if not d.continuation:  # a continuation keeps a running request going: it passes nobody over
                clock += 1
            inflight[d.dispatch_id] = d
            rep.dispatches.append(d)
        assert ctrl.decisions == decisions
        check_engines(cold_engines)
        if check_priority and new and not warm_first:
            _check_call_priority(ctrl, new, waiting, gen, cs)
        if not inflight:
            assert ctrl.done, "nothing in flight, nothing dispatched, but requests remain"
            assert not waiting
            break
        # Random engine failure (never the last engines named in fail_engines' complement).
        if to_fail and rng.random() < fail_prob:
            victim = to_fail.pop(rng.randrange(len(to_fail)))
            lost = [d for d in inflight.values() if d.engine_id == victim]
            requeued = ctrl.fail_engine(victim)
            rep.failed_engines.append(victim)
            assert requeued == [d.req_id for d in lost]
            for d in lost:
                del inflight[d.dispatch_id]
                running.discard(d.req_id)
                waiting[d.req_id] = (clock, len(waiting))
            if lost:  # a late result of a discarded chunk must be refused
                d = lost[0]
                toks, lps, stop = engine_output(d.req_id, gen[d.req_id], d.max_tokens, true_len[d.req_id])
                try:
                    ctrl.complete(d, toks, lps, stop)
                except StaleDispatchError:
                    rep.stale_checked += 1
                else:
                    raise AssertionError("a discarded chunk was accepted")
            check_engines()
            continue
        # Complete 1..3 random in-flight chunks, in random order.
        for _ in range(rng.randint(1, 3)):
            if not inflight:
                break
            did = rng.choice(list(inflight))
            d = inflight.pop(did)
            rid = d.req_id
            running.discard(rid)
            toks, lps, stop = engine_output(rid, gen[rid], d.max_tokens, true_len[rid])
            assert len(toks) <= d.max_tokens
            req = ctrl.complete(d, toks, lps, stop)
            last_engine[rid] = d.engine_id
            gen[rid] += len(toks)
            assert req.generated == gen[rid]
            assert req.engine == d.engine_id
            if req.finished:
                assert rid not in finished, f"request {rid} finished twice"
                finished.add(rid)
                assert gen[rid] == expected_len(true_len[rid], max_tok[rid])
            else:
                assert gen[rid] < expected_len(true_len[rid], max_tok[rid])
                waiting[rid] = (clock, len(waiting))
            check_engines()

    assert finished == set(range(n))
    results = ctrl.results()
    assert [r.req_id for r in results] == list(range(n))
    for r in results:
        L = expected_len(true_len[r.req_id], r.max_tokens)
        assert r.finished and r.finish_reason == expected_reason(true_len[r.req_id], r.max_tokens)
        assert r.token_ids == [token_at(r.req_id, p) for p in range(L)]
        assert r.log_probs == [logprob_at(r.req_id, p) for p in range(L)]
    assert ctrl.metrics["requests_finished"] == n
    return rep


def _check_call_priority(ctrl, new, waiting, gen, cs) -> None:
    """Policy order within one next_dispatches call, checked against the end-of-call state.

    A request the policy ranks above a dispatched one but which is still waiting after the call
    must have been skipped because its chunk fits nowhere (reservations only grow during a call).
    """
    policy = ctrl.config.policy
    buf = ctrl.buffer
    regular = [d for d in new if not d.starvation_pick]
    if not regular:
        return

    def end_of(rid: int) -> int:
        r = buf[rid]
        return r.prompt_len + gen[rid] + min(cs, r.max_tokens - gen[rid])

    if policy == "seer":
        # probes before non-probes among the policy's picks
        seen_rest = False
        for d in regular:
            if not d.is_probe:
                seen_rest = True
            else:
                assert not seen_rest, "a probe was dispatched after a non-probe in the same call"
        if any(not d.is_probe for d in regular):
            for rid in waiting:
                if buf[rid].is_probe:
                    assert not _fits_now(ctrl, end_of(rid)), (
                        f"probe {rid} waits although it fits, while a non-probe was dispatched"
                    )
    elif policy == "oracle":
        keys = [min(buf[d.req_id].true_len, buf[d.req_id].max_tokens) for d in regular]
        assert keys == sorted(keys, reverse=True), f"oracle served out of longest-first order: {keys}"
        lowest = keys[-1]
        for rid in waiting:
            r = buf[rid]
            if min(r.true_len, r.max_tokens) > lowest:
                assert not _fits_now(ctrl, end_of(rid)), (
                    f"longer request {rid} waits although it fits, while a shorter one was dispatched"
                )
