"""Policy drivers: how requests reach the simulated engines.

* ``stock``: verl's rollout. Every request is submitted up front; the engine's own vLLM scheduler (FCFS,
  recompute preemption) runs them. Placement (``Workload.stock_placement``): ``group`` = the paper's veRL
  baseline (a whole group of G samples goes to the instance with the fewest requests, i.e. group-level
  round-robin when all arrive at once); ``request`` = verl 0.9.1's load balancer (each request to the least
  in-flight instance, in arrival order; the rows' async agent loops arrive in row order up to a shuffle within
  each run of ``num_engines`` rows, drawn from the run's seed: in 8 recorded 2-engine CPU runs, 212 of 216 row
  pairs went one to each engine, the first of the pair to engine 0 in 105 of them, so which engine gets the
  long responses is a lottery); ``recorded`` = the engine each row really ran on in a recorded bench run.
* ``divided`` / ``seer`` / ``oracle`` / ``seer_sd``: the **real** :class:`seer_verl.core.RolloutController`
  (RequestBuffer, divided rollout, placement, policies ``divided`` / ``seer`` / ``oracle``) makes every
  decision: the driver only turns each :class:`~seer_verl.core.Dispatch` into an engine submission of
  ``min(budget, tokens until EOS)`` tokens and reports it back with :meth:`~RolloutController.complete`.
  ``seer_sd`` is ``seer`` plus speculative decoding on every engine, with draft lengths from the engines'
  per-token budget :func:`seer_verl.core.draft_budget.select_drafts` (``draft_budget=mba``: the paper's
  :func:`~seer_verl.core.draft_budget.mba_allocate`, probes the high-priority class) and the acceptance
  model of :mod:`seer_verl.sim.acceptance` driven by the number of *finished* siblings (complete responses in
  the group's suffix tree, as the references of paper Table 2 and of our offline replay; siblings still running
  contribute partial text, which we conservatively do not count).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from seer_verl.core import EngineState, RequestBuffer, RolloutController, SeerConfig
from seer_verl.core.draft_budget import acceptance_curve, mba_allocate, select_drafts
from seer_verl.core.policies import POLICY_NAMES

from .engine import SimEngine, SimSeq, SimSpeculation
from .events import EventLoop
from .workloads import DRAFT_BUDGETS, Workload

__all__ = ["POLICIES", "SeerDriver", "StockDriver", "TokenCount", "make_spec"]

#: stock verl, every scheduling policy registered in the core (driven by the real controller), and ``seer_sd``
POLICIES: tuple[str, ...] = ("stock", *POLICY_NAMES, "seer_sd")


class TokenCount:
    """Stands in for a request's token list: the core only needs ``len`` and ``extend`` (keeps 10^8 simulated
    tokens out of memory)."""

    __slots__ = ("n",)

    def __init__(self, n: int = 0) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def extend(self, other: Sequence[Any]) -> None:
        self.n += len(other)

    def append(self, _: Any) -> None:
        self.n += 1


class _Run:
    """``k`` placeholder tokens (or log-probs) of one chunk result."""

    __slots__ = ("k",)

    def __init__(self, k: int) -> None:
        self.k = k

    def __len__(self) -> int:
        return self.k


class _Base:
    def __init__(self, w: Workload) -> None:
        self.w = w
        n = w.num_requests
        self.finish_s = [-1.0] * n
        self.start_s = [-1.0] * n
        self.generated = [0] * n
        self.chunks = [0] * n
        self.engines_of: list[set[int]] = [set() for _ in range(n)]
        self.intervals: list[list[tuple[int, float, float]]] = [[] for _ in range(n)]
        self._unfinished = n
        self.preempted_requests = 0

    @property
    def finished(self) -> bool:
        return self._unfinished == 0

    def _record(self, engine: SimEngine, s: SimSeq, now: float) -> None:
        self.intervals[s.req_id].append((engine.engine_id, s.start_s, now))
        self.engines_of[s.req_id].add(engine.engine_id)
        if self.start_s[s.req_id] < 0:
            self.start_s[s.req_id] = s.start_s
        self.generated[s.req_id] += s.produced
        self.chunks[s.req_id] += 1
        if s.preemptions:
            self.preempted_requests += 1


class StockDriver(_Base):
    def __init__(self, w: Workload, rng: np.random.Generator | None = None) -> None:
        super().__init__(w)
        self._rng = rng if rng is not None else np.random.default_rng(0)

    def arrival_order(self) -> list[int]:
        """The order the rows reach verl's load balancer: row order, each run of ``num_engines`` rows shuffled
        for ``request`` placement (the agent loops' async jitter); row order otherwise."""
        order = list(range(self.w.num_requests))
        if self.w.stock_placement != "request":
            return order
        n = self.w.num_engines
        for k in range(0, len(order), n):
            block = order[k:k + n]
            order[k:k + n] = [block[j] for j in self._rng.permutation(len(block))]
        return order

    def start(self, loop: EventLoop) -> None:
        w = self.w
        n_eng = w.num_engines
        load = [0] * n_eng
        placement = w.stock_placement
        engine_of_group: dict[int, int] = {}
        for i in self.arrival_order():
            if placement == "recorded":
                assert w.recorded_engines is not None
                e = w.recorded_engines[i] % n_eng
            elif placement == "group":
                # a whole group to the instance with the fewest requests; with DP-attention ranks, the instance
                # spreads its requests over its ranks (least loaded rank)
                g = w.group_ids[i]
                dp = w.dp
                if g not in engine_of_group:
                    n_inst = n_eng // dp
                    engine_of_group[g] = min(range(n_inst), key=lambda j: (sum(load[j * dp:(j + 1) * dp]), j))
                inst = engine_of_group[g]
                e = min(range(inst * dp, (inst + 1) * dp), key=lambda j: (load[j], j))
            else:
                e = min(range(n_eng), key=lambda j: (load[j], j))
            load[e] += 1
            s = SimSeq(i, w.group_ids[i], w.prompt_lens[i], w.out_len(i), shared_prompt=w.prompt_lens[i])
            loop.submit(e, s)

    def on_done(self, loop: EventLoop, engine: SimEngine, done: list[SimSeq]) -> None:
        self._just_done = {s.req_id: engine.engine_id for s in done}
        for s in done:
            self._record(engine, s, loop.now)
            self.finish_s[s.req_id] = loop.now
            self._unfinished -= 1


class SeerDriver(_Base):
    """Drives the real RolloutController (policy ``divided`` / ``seer`` / ``oracle``)."""

    def __init__(self, w: Workload, policy: str) -> None:
        super().__init__(w)
        rows = list(zip(w.group_ids, w.prompt_lens))
        self.buffer = RequestBuffer.from_rows(rows, w.max_tokens, [w.out_len(i) for i in range(w.num_requests)])
        for r in self.buffer:
            r.token_ids = TokenCount()  # type: ignore[assignment]
            r.log_probs = TokenCount()  # type: ignore[assignment]
        engines = [EngineState(i, (w.kv_capacity_tokens // w.block_size) * w.block_size, w.block_size)
                   for i in range(w.num_engines)]
        self.config = SeerConfig(policy=policy, chunk_size=w.chunk_size, affinity_threshold=w.affinity_threshold,
                                 max_inflight_per_engine=w.max_num_seqs, chunk_align=w.block_size,
                                 starvation_bound=w.starvation_bound, kv_reserve=w.kv_reserve,
                                 continuation=w.continuation, share_prompt_kv=w.share_prompt_kv,
                                 precedence=w.precedence, tail_balance=w.tail_balance,
                                 cache_affinity=w.cache_affinity)
        self.ctrl = RolloutController(self.buffer, engines, self.config)
        self.finished_in_group: dict[int, int] = {}
        self.dispatch_calls = 0
        self._just_done: dict[int, int] = {}  # req_id -> engine, of the chunks that completed at this event

    def siblings_finished(self, s: SimSeq) -> int:
        """Complete sibling responses in the group's draft tree: the references of paper Table 2 / our replay."""
        return self.finished_in_group.get(s.group_id, 0)

    def _dispatch(self, loop: EventLoop) -> None:
        w = self.w
        self.dispatch_calls += 1
        for d in self.ctrl.next_dispatches():
            req = self.buffer[d.req_id]
            # seer.stream_chunks: as the service adopts it, a request dispatched in the round its chunk completed, to
            # the engine that ran that chunk, goes on in the same engine call
            streamed = w.stream_chunks and self._just_done.get(d.req_id) == d.engine_id
            gen = req.generated
            true_len = w.true_lens[d.req_id]
            eos = true_len if true_len < w.max_tokens else None
            k = min(d.max_tokens, eos - gen) if eos is not None else d.max_tokens
            stopped = eos is not None and gen + k == eos
            pool = 0
            if w.kv_pool and req.engine is not None and req.engine != d.engine_id:
                pool = d.context_len - 1  # prefix KV pulled from the global pool (paper's Mooncake)
            s = SimSeq(d.req_id, req.group_id, d.context_len, k, req.is_probe, (d, stopped), pool, d.priority,
                       shared_prompt=req.prompt_len)
            s.streamed = streamed
            loop.submit(d.engine_id, s)

    def start(self, loop: EventLoop) -> None:
        self._dispatch(loop)

    def on_done(self, loop: EventLoop, engine: SimEngine, done: list[SimSeq]) -> None:
        self._just_done = {s.req_id: engine.engine_id for s in done}
        for s in done:
            d, stopped = s.tag
            self._record(engine, s, loop.now)
            req = self.ctrl.complete(d, _Run(s.produced), _Run(s.produced), stopped)
            if req.finished:
                self.finish_s[s.req_id] = loop.now
                self._unfinished -= 1
                self.finished_in_group[req.group_id] = self.finished_in_group.get(req.group_id, 0) + 1
        self._dispatch(loop)
        self._just_done = {}


def make_spec(w: Workload, driver: SeerDriver) -> SimSpeculation:
    """Speculative decoding for ``seer_sd``: the draft budget of the core and the sibling-aware acceptance model.

    ``w.draft_budget == "per_token"`` (default) runs :func:`seer_verl.core.draft_budget.select_drafts`, the budget
    the engines run at every step: each decoding request offers a candidate of ``gamma_max`` tokens whose
    position ``j`` is accepted with probability ``p^(j+1)`` (``p`` from its finished siblings), and the engine sends
    the prefix of the batch-wide ranking that minimises the step's time per token. ``"mba"`` is the paper's
    Algorithm 1 (one draft length for probes, one for the rest)."""
    acc = w.acceptance
    gmax, lam = w.gamma_max, w.lam
    model = w.step_model
    var_cache: dict[tuple[int, int], tuple[float, float]] = {}

    def refs(s: SimSeq) -> int:
        return driver.siblings_finished(s)

    def tau(s: SimSeq, gamma: int) -> tuple[float, float]:
        key = (refs(s), gamma)
        v = var_cache.get(key)
        if v is None:
            v = (acc.tau(key[0], gamma), acc.var(key[0], gamma))
            var_cache[key] = v
        return v

    draft_fn = None
    if w.draft_s_per_token > 0:
        def draft_fn(n: int, g: int) -> float:
            return w.draft_s_per_token * n * g

    curves: dict[int, list[float]] = {}

    def curve(n: int) -> list[float]:
        c = curves.get(n)
        if c is None:
            c = curves[n] = acceptance_curve(acc.beta(n, gmax), gmax)
        return c

    def allocate_per_token(engine: SimEngine, dec: list[SimSeq], kv: float) -> list[int]:
        # with draft_reads_context a draft token also attends over a context of the batch's mean length
        per_draft_kv = kv / len(dec) if w.draft_reads_context and dec else 0.0

        def step_fn(n: int, q: int) -> float:
            t = model.step_time(n, q, kv + per_draft_kv * (q - n))
            return t + draft_fn(1, q - n) if draft_fn is not None else t

        return select_drafts([curve(refs(s)) for s in dec], [s.is_probe for s in dec], step_fn, lam=lam,
                             min_gain=w.draft_min_gain)

    def allocate_mba(engine: SimEngine, dec: list[SimSeq], kv: float) -> list[int]:
        probes = [s for s in dec if s.is_probe]
        others = [s for s in dec if not s.is_probe]

        def step_fn(n: int, q: int) -> float:
            return model.step_time(n, q, kv)

        def mean_p(seqs: list[SimSeq]) -> float:
            return sum(acc.p(refs(s)) for s in seqs) / len(seqs)

        p_h = mean_p(probes) if probes else mean_p(others)
        p_l = mean_p(others) if others else p_h
        g_h, g_l = mba_allocate(len(probes), len(others), [p_h] * gmax, gmax, lam, step_fn, draft_fn, [p_l] * gmax)
        return [g_h if s.is_probe else g_l for s in dec]

    if w.draft_budget not in DRAFT_BUDGETS:
        raise ValueError(f"draft_budget={w.draft_budget!r} is not allowed: one of {', '.join(DRAFT_BUDGETS)}")
    allocate = allocate_per_token if w.draft_budget == "per_token" else allocate_mba
    return SimSpeculation(allocate=allocate, tau=tau, draft_s_per_token=w.draft_s_per_token,
                          draft_reads_context=w.draft_reads_context)
