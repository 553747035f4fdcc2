"""One inference engine with vLLM-v1-style continuous batching, paged KV, preemption and a prefix cache.

Per step (``schedule()`` then one forward pass), as vLLM v1's scheduler does it:

1. **Running requests first**, in admission order. A prefilling request gets a prompt slice (chunked prefill,
   ``max_batched_tokens`` per step shared by all); a decoding request gets 1 query token (+ ``gamma`` draft
   tokens under speculative decoding). Their KV blocks must cover ``computed + new`` tokens. If the blocks do
   not fit, the **newest running request is preempted** (its KV is freed, it goes back to the *front* of the
   waiting queue with everything it generated, and must re-prefill prompt + generated tokens when it is
   re-admitted: "recompute" preemption), until the rest fits.
2. **Waiting requests** (FCFS, no skipping; none admitted in a step that preempted) are admitted while
   ``max_num_seqs`` and the token budget allow and the blocks of their first prefill slice fit.
3. The step takes ``StepTimeModel.step_time(num_seqs, query_tokens, kv_tokens)``; the step that finishes a
   prefill samples the first new token, every decode step one token (+ accepted drafts).

**Prefix cache.** Blocks of finished or preempted requests stay cached (full blocks only) until evicted in LRU
order to make room. A (re-)admitted request reuses its own cached prefix, capped at ``context - 1`` tokens like
vLLM, and prefills the rest: a chunk continuing on the engine that ran the previous chunk costs a short prefill,
one moved to another engine re-prefills its whole context (unless the workload has a global KV pool, ``kv_pool``:
the paper's Mooncake pool, where the driver hands the prefix over with the request). Siblings share their prompt
(``SimSeq.shared_prompt``): the full blocks of a group's prompt are held once while several of its requests run,
and a request admitted beside a running sibling takes them from it, as vLLM's prefix cache shares the blocks of
running requests.

**Macro-steps.** Consecutive pure-decode steps of an unchanged batch are simulated at once: the batch runs ``k``
steps until its first request completes, or until its KV would overflow (the step that preempts), with the
closed-form time of ``k`` steps whose KV grows linearly. A request arriving mid-way joins after the step in
progress (the macro-step is cut there). With speculative decoding, each request advances by its expected
tokens per step while planning; the realised tokens over the ``k`` steps are drawn from a normal with the exact
mean and variance (seeded), clipped to ``[k, k * (gamma + 1)]`` and to the request's remaining tokens.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from seer_verl.core.step_time import StepTimeModel

__all__ = ["SimEngine", "SimSeq", "SimSpeculation"]


class SimSeq:
    """One submission to an engine: a whole request (stock) or one chunk (divided rollout)."""

    __slots__ = (
        "arrival",
        "base_ctx",
        "computed",
        "gamma",
        "group_id",
        "is_probe",
        "n_out",
        "pool_prefix",
        "preemptions",
        "prefill_tokens",
        "priority",
        "produced",
        "rate",
        "req_id",
        "shared_prompt",
        "start_s",
        "streamed",
        "tag",
        "target",
        "var",
    )

    def __init__(self, req_id: int, group_id: int, base_ctx: int, n_out: int, is_probe: bool = False,
                 tag: object = None, pool_prefix: int = 0, priority: int = 0, shared_prompt: int = 0) -> None:
        self.req_id = req_id
        self.arrival = 0  # order of its submission to the engine (set by SimEngine.add)
        self.priority = priority  # lower first, under the engine's priority scheduling (ties: arrival order)
        self.group_id = group_id
        self.is_probe = is_probe
        self.base_ctx = base_ctx  # prompt + tokens generated before this submission
        self.n_out = n_out  # tokens this submission must generate
        self.produced = 0  # tokens generated so far in this submission
        self.computed = 0  # tokens whose KV is on the engine
        self.target = 0  # prefill target: context to (re)compute before decoding
        self.gamma = 0
        self.rate = 1.0
        self.var = 0.0
        self.tag = tag  # the driver's handle (e.g. the controller's Dispatch)
        self.pool_prefix = pool_prefix  # prefix KV available from a global pool (kv_pool)
        self.shared_prompt = shared_prompt  # prompt tokens every request of its group starts with (0: none)
        self.preemptions = 0
        self.start_s = -1.0
        self.streamed = False  # a chunk its request's running engine call goes on with: no submission to pay for
        self.prefill_tokens = 0  # tokens prefilled (incl. recompute) for this submission

    @property
    def ctx(self) -> int:
        return self.base_ctx + self.produced

    @property
    def prefilling(self) -> bool:
        return self.computed < self.target


@dataclass
class SimSpeculation:
    """Speculative decoding on an engine: ``allocate(engine, decoding, kv)`` gives each decoding request's draft
    length for the next step(s)."""

    allocate: Callable[[SimEngine, list[SimSeq], float], list[int]]
    tau: Callable[[SimSeq, int], tuple[float, float]]  # (mean, variance) tokens per step at gamma
    draft_s_per_token: float = 0.0
    draft_reads_context: bool = False  # each draft token adds its row's context to the step's attended KV


@dataclass
class EngineStats:
    busy_s: float = 0.0
    steps: int = 0
    tokens: int = 0
    prefill_tokens: int = 0
    recompute_tokens: int = 0
    preemptions: int = 0
    cache_hit_tokens: int = 0
    spec_steps: int = 0
    timeline: list[tuple[float, int, int, float, float]] = field(default_factory=list)  # t, running, waiting, kv, bsz


class SimEngine:
    """A simulated engine; driven by :class:`seer_verl.sim.events.EventLoop`."""

    def __init__(self, engine_id: int, capacity_tokens: int, block_size: int, max_num_seqs: int,
                 max_batched_tokens: int, step_model: StepTimeModel, rng, spec: SimSpeculation | None = None,
                 timeline_dt: float = 1.0, max_macro_steps: int = 1 << 30, priority: bool = False,
                 submit_cost_s: float = 0.0) -> None:
        self.engine_id = engine_id
        # engine seconds each submission costs when first admitted (the CPU its call takes from the engine's core)
        self.submit_cost_s = submit_cost_s
        # vLLM scheduling_policy: fcfs (False) or priority (True: waiting ordered by (priority, arrival); short of
        # KV, the running request with the largest (priority, arrival) is preempted instead of the newest)
        self.priority = priority
        self._arrivals = 0
        self.block_size = block_size
        self.cap_blocks = capacity_tokens // block_size
        self.max_num_seqs = max_num_seqs
        self.max_batched_tokens = max_batched_tokens
        self.model = step_model
        self.rng = rng
        self.spec = spec
        self.timeline_dt = timeline_dt
        self.max_macro_steps = max_macro_steps
        self.running: list[SimSeq] = []
        self.waiting: deque[SimSeq] = deque()
        self.cache: OrderedDict[int, int] = OrderedDict()  # req_id -> cached full blocks (LRU first)
        self.cached_blocks = 0
        self.version = 0
        self.stats = EngineStats()
        # the plan in progress
        self.busy = False
        self.t_start = 0.0
        self.t_end = 0.0
        self.k = 0
        self.decode_only = False
        self._plan_seqs: list[SimSeq] = []
        self._plan_new: list[int] = []  # per seq: query tokens of a prefill step (decode: 0)
        self._B = 0
        self._Q = 0
        self._kv0 = 0.0
        self._dkv = 0.0
        self._last_tl = -1e18

    # -- helpers -------------------------------------------------------------------------------------------

    def blocks_for(self, tokens: float) -> int:
        return -(-math.ceil(tokens) // self.block_size)

    def used_blocks(self) -> int:
        return sum(self.blocks_for(s.computed) for s in self.running) - self._shared_savings(self.running)

    def _prompt_blocks(self, s: SimSeq) -> int:
        """Full KV blocks of ``s``'s group prompt that ``s`` holds (shareable with its siblings)."""
        p = s.shared_prompt // self.block_size
        return p if p > 0 and s.computed >= p * self.block_size else 0

    def _shared_savings(self, seqs: list[SimSeq]) -> int:
        """Blocks held once for several requests: per group, every holder of its prompt blocks but one."""
        held: dict[int, int] = {}
        saved = 0
        for s in seqs:
            p = self._prompt_blocks(s)
            if p:
                if s.group_id in held:
                    saved += p
                else:
                    held[s.group_id] = p
        return saved

    @staticmethod
    def _key(s: SimSeq) -> tuple[int, int]:
        return (s.priority, s.arrival)

    def _enqueue(self, s: SimSeq, front: bool) -> None:
        """Into the waiting queue: FCFS (a preempted request goes to the front) or by (priority, arrival)."""
        if not self.priority:
            if front:
                self.waiting.appendleft(s)
            else:
                self.waiting.append(s)
            return
        key = self._key(s)
        i = len(self.waiting)
        while i > 0 and self._key(self.waiting[i - 1]) > key:
            i -= 1
        self.waiting.insert(i, s)

    def _cache_put(self, s: SimSeq) -> None:
        full = int(s.computed) // self.block_size
        old = self.cache.pop(s.req_id, 0)
        self.cached_blocks -= old
        if full > 0:
            self.cache[s.req_id] = full
            self.cached_blocks += full

    def _cache_take(self, req_id: int) -> int:
        b = self.cache.pop(req_id, 0)
        self.cached_blocks -= b
        return b

    def _evict_to(self, free_needed_total: int) -> None:
        """Evict LRU cached blocks until ``used + cached <= cap``, given ``used`` = free_needed_total."""
        excess = free_needed_total + self.cached_blocks - self.cap_blocks
        while excess > 0 and self.cache:
            rid, b = next(iter(self.cache.items()))
            take = min(b, excess)
            if take == b:
                del self.cache[rid]
            else:
                self.cache[rid] = b - take  # tail blocks go first
            self.cached_blocks -= take
            excess -= take

    @property
    def has_work(self) -> bool:
        return bool(self.running or self.waiting)

    @property
    def load(self) -> int:
        return len(self.running) + len(self.waiting)

    # -- driver API ----------------------------------------------------------------------------------------

    def add(self, s: SimSeq, now: float) -> bool:
        """Queue a submission. Returns True if the engine needs (re)planning now (it was idle or its
        macro-step was cut so that the new request joins after the step in progress)."""
        self._arrivals += 1
        s.arrival = self._arrivals
        self._enqueue(s, front=False)
        if not self.busy:
            return True
        if self.decode_only and self.k > 1:
            done = self.model.steps_within(self._B, self._Q, self._kv0, self._dkv, now - self.t_start)
            k_new = min(self.k, done + 1)
            if k_new < self.k:
                self.k = k_new
                self.t_end = self.t_start + self.model.decode_time(self._B, self._Q, self._kv0, self._dkv, k_new)
                self.version += 1
                return True
        return False

    def plan(self, now: float) -> float | None:
        """Schedule the next step(s) starting at ``now``; return their end time (None if idle)."""
        self.busy = False
        if not self.running and not self.waiting:
            self._record(now)
            return None
        bs = self.block_size
        budget = self.max_batched_tokens
        spec = self.spec
        # 1. running requests: decode (1 + gamma) or a prefill slice; preempt the newest on KV shortage
        gammas: dict[int, int] = {}
        if spec is not None:
            dec = [s for s in self.running if not s.prefilling]
            if dec:
                kv = float(sum(s.computed for s in self.running))
                gammas = {id(s): g for s, g in zip(dec, spec.allocate(self, dec, kv))}
        preempted = False
        need = 0
        rem = budget
        new: list[int] = []
        needs: list[int] = []
        for s in self.running:
            c = s.computed
            if c < s.target:  # prefilling
                n = min(s.target - c, rem) if rem > 0 else 0
                rem -= n
                new.append(n)
                b = -(-(c + n) // bs)
            else:
                if spec is not None:
                    g = max(0, min(gammas.get(id(s), 0), s.n_out - s.produced - 1))
                else:
                    g = 0
                s.gamma = g
                rem -= 1 + g
                new.append(0)
                b = -(-(c + 1 + g) // bs)
            needs.append(b)
            need += b
        need -= self._shared_savings(self.running)
        while need > self.cap_blocks and self.running:
            # vLLM v1: preempt the newest running request (priority: the largest (priority, arrival)) until the
            # rest fits
            i = len(self.running) - 1
            if self.priority:
                i = max(range(len(self.running)), key=lambda j: self._key(self.running[j]))
            victim = self.running[i]
            needs.pop(i)
            n = new.pop(i)
            rem += n if victim.prefilling else 1 + victim.gamma
            self._preempt(victim, now)
            need = sum(needs) - self._shared_savings(self.running)
            preempted = True
        # 2. admission (FCFS, no skipping; none after a preemption in this step unless nothing is left running)
        if not self.running and preempted:
            preempted = False
            need, rem, new = 0, budget, []
        fresh = 0  # submissions admitted for the first time in this step (not resumed after a preemption)
        if not preempted:
            holders = {r.group_id for r in self.running if self._prompt_blocks(r)}
            while self.waiting and len(self.running) < self.max_num_seqs and rem > 0:
                s = self.waiting[0]
                ctx = s.ctx
                hit_blocks = self._cache_take(s.req_id)
                hit = min(hit_blocks * bs, ((ctx - 1) // bs) * bs)
                if s.pool_prefix:
                    hit = max(hit, min(s.pool_prefix, ((ctx - 1) // bs) * bs))
                shared = (s.shared_prompt // bs) * bs if s.group_id in holders else 0
                if shared:  # a running sibling holds the prompt's blocks
                    hit = max(hit, min(shared, ((ctx - 1) // bs) * bs))
                n = min(ctx - hit, rem)
                blocks = self.blocks_for(hit + n) - (shared // bs if hit >= shared else 0)
                if need + blocks > self.cap_blocks:
                    if hit_blocks:
                        self.cache[s.req_id] = hit_blocks
                        self.cache.move_to_end(s.req_id, last=False)
                        self.cached_blocks += hit_blocks
                    break
                self.waiting.popleft()
                s.pool_prefix = 0
                s.computed = hit
                s.target = ctx
                self.stats.cache_hit_tokens += hit
                if s.start_s < 0:
                    s.start_s = now
                    fresh += not s.streamed
                self.running.append(s)
                if self._prompt_blocks(s):
                    holders.add(s.group_id)
                new.append(n)
                need += blocks
                rem -= n
        if not self.running:
            if self.waiting:
                s = self.waiting[0]
                raise RuntimeError(
                    f"engine {self.engine_id}: request {s.req_id} (context {s.ctx}) cannot be admitted on an empty "
                    f"engine of {self.cap_blocks} blocks x {bs} tokens")
            self._record(now)
            return None
        self._evict_to(need)
        # 3. this step's shape
        B = len(self.running)
        Q = budget - rem
        kv0 = float(sum(s.computed for s in self.running))
        decode_only = all(n == 0 for n in new)
        self._plan_seqs = list(self.running)
        self._plan_new = new
        self._B, self._Q, self._kv0 = B, Q, kv0
        self.decode_only = decode_only
        if decode_only:
            if spec is not None:
                for s in self.running:
                    s.rate, s.var = spec.tau(s, s.gamma) if s.gamma > 0 else (1.0, 0.0)
                dkv = sum(s.rate for s in self.running)
                if spec.draft_reads_context:  # g drafts read the row's context g more times, growing as it grows
                    kv0 += float(sum(s.gamma * s.computed for s in self.running))
                    dkv += sum(s.gamma * s.rate for s in self.running)
                    self._kv0 = kv0
                k = min(math.ceil((s.n_out - s.produced) / s.rate - 1e-9) for s in self.running)
            else:
                for s in self.running:
                    s.rate = 1.0
                dkv = float(B)
                k = min(s.n_out - s.produced for s in self.running)
            k = max(1, min(k, self.max_macro_steps))
            k = self._kv_horizon(k)
            self._dkv = dkv
        else:
            k = 1
            self._dkv = 0.0
        self.k = k
        dur = self.model.decode_time(B, Q, kv0, self._dkv, k) + self.submit_cost_s * fresh
        if spec is not None and spec.draft_s_per_token > 0:
            dur += spec.draft_s_per_token * sum(s.gamma for s in self.running) * k
        self.t_start, self.t_end = now, now + dur
        self.busy = True
        self.version += 1
        self._record(now)
        return self.t_end

    def _kv_horizon(self, k: int) -> int:
        """Largest k' <= k such that every step j < k' has its blocks (a step that overflows preempts)."""
        run = self.running
        c = np.fromiter((s.computed + 1 + s.gamma for s in run), dtype=np.float64, count=len(run))
        r = np.fromiter((s.rate for s in run), dtype=np.float64, count=len(run))
        bs = self.block_size
        cap = self.cap_blocks
        saved = self._shared_savings(run)  # decoding requests hold their whole prompt

        def need(j: int) -> int:
            return int(np.ceil((c + j * r) / bs - 1e-9).sum()) - saved

        if need(k - 1) <= cap:
            return k
        lo, hi = 0, k - 1  # need(lo) fits (step 0 was checked by plan), need(hi) does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if need(mid) <= cap:
                lo = mid
            else:
                hi = mid
        return lo + 1

    def _preempt(self, s: SimSeq, now: float) -> None:
        self.running.remove(s)
        self._cache_put(s)
        s.computed = 0
        s.target = 0
        s.preemptions += 1
        self.stats.preemptions += 1
        self._enqueue(s, front=True)

    def finish_step(self, now: float) -> list[SimSeq]:
        """Commit the plan that ends at ``now``; return the submissions that completed."""
        k = self.k
        dur = now - self.t_start
        st = self.stats
        st.busy_s += dur
        st.steps += k
        done: list[SimSeq] = []
        if self.decode_only:
            spec = self.spec is not None
            for s in self._plan_seqs:
                left = s.n_out - s.produced
                if spec and s.gamma > 0:
                    mean = k * s.rate
                    if math.ceil(left / s.rate - 1e-9) <= k:
                        got = left
                    else:
                        got = round(mean + math.sqrt(k * s.var) * self.rng.standard_normal())
                        got = max(k, min(got, k * (s.gamma + 1), left - 1))
                    st.spec_steps += k
                else:
                    got = min(k, left)
                s.produced += got
                s.computed += got
                st.tokens += got
                if s.produced >= s.n_out:
                    done.append(s)
        else:
            for s, n in zip(self._plan_seqs, self._plan_new):
                if n > 0:  # prefill slice
                    s.computed += n
                    st.prefill_tokens += n
                    s.prefill_tokens += n
                    if s.computed >= s.target:
                        s.produced += 1  # the step that completes the prefill samples a token
                        st.tokens += 1
                        s.computed = s.ctx - 1
                else:
                    left = s.n_out - s.produced
                    got = 1
                    if self.spec is not None and s.gamma > 0:
                        p_mean, p_var = self.spec.tau(s, s.gamma)
                        got = round(p_mean + math.sqrt(p_var) * self.rng.standard_normal())
                        got = max(1, min(got, s.gamma + 1))
                    got = min(got, left)
                    s.produced += got
                    s.computed += got
                    st.tokens += got
                if s.produced >= s.n_out:
                    done.append(s)
        for s in done:
            self.running.remove(s)
            s.computed = s.ctx - 1 if s.ctx > 0 else 0
            self._cache_put(s)
        self.busy = False
        return done

    def _record(self, now: float) -> None:
        if now - self._last_tl >= self.timeline_dt:
            kv = self.used_blocks() / max(self.cap_blocks, 1)
            self.stats.timeline.append((now, len(self.running), len(self.waiting), kv, 0.0))
            self._last_tl = now

