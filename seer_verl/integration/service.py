"""The Seer rollout service: a Ray actor that runs Algorithm 2 against verl's own vLLM servers.

It is the "Context Manager" + "Request Buffer" of the paper (Fig. 5) for one verl job. verl's agent-loop workers
still build prompts and post-process outputs exactly as in stock verl; their ``generate`` calls (one per sample)
land here instead of going straight to an engine (:class:`~seer_verl.integration.client.SeerLLMServerClient`).
Once every sample of the batch has arrived (or none arrived for ``seer.admission_wait_s``), the engine-agnostic
:class:`~seer_verl.core.RolloutController` decides which chunk runs where; each chunk is a plain ``vLLMHttpServer.generate`` call with the prompt plus the
tokens generated so far and ``max_tokens`` = the chunk budget, and the sample's caller gets one ``TokenOutput``
with the stitched tokens and log-probs when its last chunk ends.

Why chunk continuation is exact: sampling is autoregressive and token-in/token-out, so continuing from
``prompt + generated`` draws the next token from the same conditional distribution as an uninterrupted
generation would (no per-request seed, no penalties over generated tokens in verl's default sampling params);
vLLM's prefix cache keeps the continuation cheap on the engine that ran the previous chunk.

Multi-turn agents (verl's ``tool_agent`` and any agent loop) call ``generate`` once per turn, each time with the
conversation so far as the prompt. Each call is one request of the controller: a sample's first call is part of
the batch the controller starts with; a later turn, or a first call that arrives after the controller started
(a row that was late, or whose agent skipped it: the service never waits for a row beyond
``seer.admission_wait_s``), joins the running rollout (:meth:`RolloutController.add_request`) in its sample's
group, preferring the engine where the sample's previous turn ran (its prefix is cached there), and is chunked,
estimated and placed like every request. The batch ends when the manager calls :meth:`end_batch` (verl's agent
loops have all returned), not when the controller first runs out of requests.

Engine loss: a chunk call that raises, or that does not answer within ``seer.chunk_timeout_s`` while no other chunk
came back from its engine in that time (a slow engine is not a lost one), is checked against
its engine (is the server actor alive, does vLLM report its engine core dead, does it answer a health check within
``seer.health_timeout_s``). A lost engine is handed to :meth:`RolloutController.fail_engine`: its in-flight
requests resume on the other engines from their last completed chunk (the prefix tokens of completed chunks are
kept; the lost chunk's partial output never reached the controller), each sample still answers its caller exactly
once, and the engine is not used again by this service. When no engine is left, every caller (and
``end_batch``) gets :class:`EngineLossError` naming the engines and why each was declared lost. A call that fails on a
healthy engine is the sample's own error (e.g. vLLM rejects the prompt): the batch fails with
:class:`SampleError` naming the row, as stock verl fails the batch with the engine's error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from seer_verl.aio import bounded
from seer_verl.backends import backend_of
from seer_verl.integration.engines import lost_reason
from seer_verl.core import Dispatch, EngineState, NoEngineError, RequestBuffer, RolloutController, SeerConfig
from seer_verl.core.config import AUTO_CHUNK_TIMEOUT_BASE_S
from seer_verl.speculative.config import SpecConfig
from seer_verl.speculative.coordinator import GroupedSpeculation

logger = logging.getLogger(__name__)


class EngineLossError(RuntimeError):
    """Every rollout engine has failed (or the survivors cannot hold some request): the batch cannot finish."""


class SampleError(RuntimeError):
    """One sample of the batch failed on a healthy engine, or its input is unusable; the message names its row."""


@dataclass
class _Row:
    """One ``generate`` call: a sample's turn (single-turn agents make one per sample)."""

    row: int
    prompt_ids: list[int]
    sampling_params: dict[str, Any]
    future: asyncio.Future
    budget: int
    turn: int = 0
    stop_ids: frozenset[int] = frozenset()  # token ids that end it: EOS and the call's own stop_token_ids
    intervals: list[tuple[int, float, float]] = field(default_factory=list)
    lost: list[tuple[int, float, float]] = field(default_factory=list)
    extra_fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Batch:
    """The open batch: each row's group, verl's length settings, and what has happened to it so far."""

    groups: list[int]                      # row -> group (siblings share one); grows with extend_batch
    true_lens: list[int] | None            # per row (oracle only)
    prompt_length: int                     # verl's settings the response budgets follow
    response_length: int
    max_model_len: int
    t0: float = field(default_factory=time.time)
    error: BaseException | None = None     # the first failure; every later call and end_batch raise it
    closed: bool = False                   # verl's agent loops have returned: no call will come any more
    first_call: float | None = None        # when the first generate call arrived
    started: float | None = None           # when the controller started
    late_rows: int = 0                     # calls that joined after the controller started


@dataclass
class EngineInfo:
    """One rollout engine as the controller sees it."""

    address: str
    capacity_tokens: int
    block_size: int


@dataclass
class _ChunkDone:
    tokens: list[int]
    logprobs: list[float]
    extra: dict[str, Any]
    t0: float
    t1: float


@dataclass
class _EngineLost:
    reason: str
    t0: float
    t1: float


@dataclass
class _ChunkFailed:
    error: BaseException
    t0: float
    t1: float


#: seconds between liveness probes of an engine while chunks wait on it
LIVENESS_PROBE_S = 2.0

#: seconds between two reads of the streamed calls' progress on one engine (``seer.stream_chunks``)
STREAM_POLL_S = 0.5


@dataclass
class _Stream:
    """One engine call that runs a request's chunks for as long as it continues on that engine
    (``seer.stream_chunks``): it asks for the request's whole remaining budget; the service reads its tokens as it
    passes each chunk boundary and cuts it when the request must wait or move."""

    rid: str
    d: Dispatch             # the chunk it runs now (always on the call's engine)
    offset: int             # tokens of the call already reported to the controller as completed chunks
    t_chunk: float          # when the current chunk began
    t_progress: float       # when the call last made progress (its timeout counts from here)
    pending: bool = False   # its chunk completed at a boundary: the next dispatch adopts it, or it is cut
    cut: bool = False       # aborted: its call's result is not needed
    done: _ChunkDone | None = None  # the call's own result, once it returned (possibly past its boundary)

    @property
    def req_id(self) -> int:
        return self.d.req_id

    @property
    def engine_id(self) -> int:
        return self.d.engine_id

    @property
    def boundary(self) -> int:
        return self.offset + self.d.max_tokens


@dataclass(frozen=True)
class _Poll:
    """A read of the streamed calls' progress on one engine."""

    engine_id: int


def _group_lengths(ctl: RolloutController) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for r in (ctl.results() if ctl.done else []):
        if r.finished:
            out.setdefault(r.group_id, []).append(len(r.token_ids))
    return out


def _is_actor_death(exc: BaseException) -> bool:
    """True if ``exc`` says the engine's server actor is gone (killed, crashed, its node lost)."""
    from ray.exceptions import RayActorError

    return isinstance(exc, RayActorError)


def _short(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()
    first = text[-1] if text else ""
    return f"{type(exc).__name__}: {first[:limit]}"


class SeerRolloutService:
    """Ray actor (async). One rollout batch at a time, as in synchronous RL.

    Args:
        servers: ``{address: vLLMHttpServer handle}`` in a fixed engine order.
        engines: capacity and block size of each engine (same order).
        seer_config: the ``seer`` config node (policy, chunk_size, ...).
        eos_token_ids: token ids that end a sample (to tell EOS from the chunk cap when a chunk ends exactly at
            its budget).
        max_inflight_per_engine: vLLM's ``max_num_seqs`` (chunks beyond it would queue inside the engine).
        dead: ``{address: reason}`` of engines already known to be lost (never used).
    """

    def __init__(
        self,
        servers: dict[str, Any],
        engines: list[EngineInfo],
        seer_config: dict[str, Any],
        eos_token_ids: list[int],
        max_inflight_per_engine: int | None = None,
        dead: dict[str, str] | None = None,
        backend: str = "vllm",
    ) -> None:
        self._backend = backend_of(backend)  # the engine seam (seer_verl.backends): health, RPC into the workers
        self._addresses = list(servers)
        self._handles = [servers[a] for a in self._addresses]
        self._engines = engines
        cfg = dict(seer_config)
        if max_inflight_per_engine is not None and cfg.get("max_inflight_per_engine") is None:
            cfg["max_inflight_per_engine"] = max_inflight_per_engine
        if cfg.get("chunk_align") is None:  # block-aligned chunk ends: one-token continuation prefills
            cfg["chunk_align"] = min(e.block_size for e in engines)
        self._spec = SpecConfig.from_mapping(cfg.pop("spec", None))
        self._config = SeerConfig.from_mapping(cfg)
        # adaptive grouped speculative decoding (seer.spec.enabled): request tags, draft server, draft clients
        self._sd = GroupedSpeculation(self._spec, self._handles, self._backend) if self._spec.enabled else None
        # seer.chunk_size null (auto) is resolved per batch from the alive engines' KV and the response length
        self._chunk_timeout_s = (self._config.effective_chunk_timeout_s()
                                 if self._config.chunk_size is not None else AUTO_CHUNK_TIMEOUT_BASE_S)
        self._health_timeout_s = float(self._config.health_timeout_s)
        self._eos = set(int(t) for t in eos_token_ids)
        # engines lost so far (index -> reason); persists across batches: a lost engine is never used again
        self._dead: dict[int, str] = {self._addresses.index(a): r for a, r in (dead or {}).items()}
        self._failures: list[dict[str, Any]] = []
        self._last_ok: dict[int, float] = {}  # engine index -> when a chunk last came back from it
        # engine index -> the running liveness probe (one per engine, shared by every chunk waiting on it)
        self._probes: dict[int, asyncio.Future] = {}
        self._admission_wait_s = float(self._config.admission_wait_s)
        # seer.stream_chunks: one engine call per request while it continues on its engine (not with speculation,
        # whose drafter tags every chunk's call)
        self._stream = bool(self._config.stream_chunks) and self._sd is None
        self._streams: dict[int, _Stream] = {}  # req_id -> its running (or pending) streamed call
        self._polls: set[int] = set()  # engines with a progress read in flight
        self._calls_made = 0  # engine calls of the batch (one per chunk without streaming)
        self._cuts = 0  # streamed calls cut at a boundary
        self._batch: _Batch | None = None
        self._rows: dict[int, _Row] = {}  # controller req_id -> its call (before the controller starts: row -> call)
        self._calls: dict[int, list[_Row]] = {}  # row -> its calls so far, in turn order
        self._wake: asyncio.Event | None = None
        self._admit: asyncio.TimerHandle | None = None
        self._runner: asyncio.Task | None = None
        self._last: dict[str, Any] = {}
        self._ctl: RolloutController | None = None

    # -- batch lifecycle (called by the manager) ----------------------------------------------------------------

    def begin_batch(self, groups: list[int], prompt_length: int, response_length: int, max_model_len: int,
                    true_lens: list[int] | None = None) -> None:
        """Announce a batch: the group of each row (siblings share a group) and verl's length settings."""
        if self._batch is not None:
            raise RuntimeError("SeerRolloutService: a batch is already running (synchronous rollout only)")
        self._batch = _Batch(list(groups), true_lens, prompt_length, response_length, max_model_len)
        self._rows = {}
        self._calls = {}
        self._runner = None
        self._last = {}
        self._failures = []
        self._streams = {}
        self._polls = set()
        self._calls_made = 0
        self._cuts = 0

    def extend_batch(self, groups: list[int]) -> int:
        """More rows join the open batch (verl's V1 trainer submits refills while a rollout runs); returns the first
        new row. Their calls join the running rollout like late rows."""
        b = self._batch
        if b is None or b.closed:
            raise RuntimeError("SeerRolloutService.extend_batch: no open batch")
        if b.true_lens is not None:
            raise ValueError("extend_batch: the open batch has true lengths (oracle); the new rows have none")
        first = len(b.groups)
        b.groups.extend(int(g) for g in groups)
        return first

    def idle(self) -> bool:
        """True when no ``generate`` call of the open batch waits for its answer (it can end without cutting a
        sample short)."""
        return all(c.future.done() for calls in self._calls.values() for c in calls)

    async def end_batch(self) -> dict[str, Any]:
        """Wait for the batch to finish; return its metrics and per-row chunk records. The service is ready for
        the next batch afterwards even if this one failed (the failure is re-raised)."""
        try:
            if self._batch is not None:
                self._batch.closed = True  # verl's agent loops have returned: no call will come any more
            if self._wake is not None:
                self._wake.set()
            if self._admit is not None:
                self._admit.cancel()
            if self._runner is not None:
                await self._runner
            elif self._batch is not None and self._batch.error is not None:
                raise self._batch.error
        finally:
            for r in self._rows.values():  # rows of a batch that never started (a sibling's caller failed first)
                if not r.future.done():
                    r.future.set_exception(RuntimeError("Seer batch ended before this sample could run"))
            self._batch = None
            self._rows = {}
            self._calls = {}
            self._runner = None
            self._ctl = None
            self._wake = None
            self._admit = None
        return self._last

    def progress(self) -> dict[str, Any]:
        """A snapshot of the running batch (for monitoring and fault-injection tests): rows received, requests
        unfinished and finished, chunks completed, and chunks in flight per engine address."""
        ctl = self._ctl
        out: dict[str, Any] = {"rows": len(self._calls), "running": ctl is not None and not ctl.done,
                               "unfinished": None, "finished": 0, "chunks_completed": 0, "inflight": {}}
        if ctl is not None:
            out["unfinished"] = ctl.num_unfinished
            out["chunks_completed"] = ctl.metrics["chunks_completed"]
            out["finished"] = ctl.metrics["requests_finished"]
            for d in ctl.inflight():
                a = self._addresses[d.engine_id]
                out["inflight"][a] = out["inflight"].get(a, 0) + 1
        return out

    def sd_server_name(self) -> str | None:
        """Ray name of the grouped draft server (None without speculation or before the first batch)."""
        return self._sd.server_name if self._sd is not None else None

    def engine_status(self) -> dict[str, Any]:
        """``{"alive": [addresses], "dead": {address: reason}}``."""
        return {"alive": [a for i, a in enumerate(self._addresses) if i not in self._dead],
                "dead": {self._addresses[i]: r for i, r in self._dead.items()}}

    # -- per-sample calls (from SeerLLMServerClient in verl's agent-loop workers) --------------------------------

    async def generate(self, row: int, prompt_ids: list[int], sampling_params: dict[str, Any]) -> dict[str, Any]:
        b = self._batch
        if b is None:
            raise RuntimeError("SeerRolloutService.generate called outside begin_batch/end_batch")
        n = len(b.groups)
        if not 0 <= row < n:
            raise ValueError(f"row {row} outside the batch of {n} samples")
        if b.closed:
            raise RuntimeError(f"row {row}: generate called after the batch ended")
        calls = self._calls.setdefault(row, [])
        if calls and not calls[-1].future.done():
            raise ValueError(f"row {row} called generate again before its previous call returned (a sample's turns "
                             "run one after another; each row of the batch is one sample)")
        if b.error is not None:
            raise b.error
        sp = dict(sampling_params)
        try:
            budget = self._budget(row, len(prompt_ids), sp)
        except SampleError as exc:
            self._fail_batch(exc)
            raise
        # a tool agent's stop tokens (e.g. verl's tool parsers' stop_token_ids) end a turn like EOS; vLLM keeps
        # the stop token in the output, so a chunk that ends on one at its exact budget has stopped
        stop_ids = frozenset(self._eos | {int(t) for t in (sp.get("stop_token_ids") or ())})
        call = _Row(row, list(prompt_ids), sp, asyncio.get_running_loop().create_future(), budget=budget,
                    turn=len(calls), stop_ids=stop_ids)
        calls.append(call)
        if b.first_call is None:
            b.first_call = time.time()
        if self._runner is None:
            self._rows[row] = call  # the batch is still gathering: keyed by row until the controller starts
            if len(self._rows) == n:
                self._start()
            else:  # start without the missing rows if none arrives for admission_wait_s
                if self._admit is not None:
                    self._admit.cancel()
                self._admit = asyncio.get_running_loop().call_later(self._admission_wait_s, self._start)
        else:
            self._join(call)
        return await call.future

    def _start(self) -> None:
        """Start the controller on the calls received so far (the rest join while it runs)."""
        if self._runner is not None or self._batch is None or self._batch.error is not None:
            return
        if self._admit is not None:
            self._admit.cancel()
            self._admit = None
        self._batch.started = time.time()
        pending = [self._rows[r] for r in sorted(self._rows)]
        self._rows = dict(enumerate(pending))  # controller req_id -> call; in row order
        try:
            self._ctl = self._make_controller()  # now, so that a call arriving from here on can join it
        except Exception as exc:  # noqa: BLE001 - every caller already has it; end_batch raises it
            self._batch.error = exc
            return
        self._wake = asyncio.Event()
        self._runner = asyncio.create_task(self._run())

    def _join(self, call: _Row) -> None:
        """A call that arrives while the controller runs (a later turn, a late row) joins the rollout."""
        b = self._batch
        ctl = self._ctl
        assert b is not None and ctl is not None and self._wake is not None
        if call.turn == 0:
            b.late_rows += 1
        true_len = b.true_lens[call.row] if b.true_lens is not None and call.turn == 0 else None
        # the engine of the sample's previous turn holds the conversation's prefix (add_request ignores it if lost)
        prev = self._calls[call.row][call.turn - 1] if call.turn > 0 else None
        engine = prev.intervals[-1][0] if prev is not None and prev.intervals else None
        try:
            req = ctl.add_request(b.groups[call.row], len(call.prompt_ids), call.budget, engine=engine,
                                  true_len=true_len)
        except NoEngineError as exc:
            err: Exception = (EngineLossError(self._loss_message(str(exc))) if self._dead
                              else SampleError(f"row {call.row} (turn {call.turn}): {exc}"))
            call.future.set_exception(err)
            if b.error is None:
                b.error = err
            self._wake.set()
            return
        self._rows[req.req_id] = call
        self._wake.set()

    def _budget(self, row: int, prompt_len: int, sp: dict[str, Any]) -> int:
        """The sample's total token budget, computed exactly as verl's vLLMHttpServer.generate does."""
        b = self._batch
        if prompt_len == 0:
            raise SampleError(f"row {row}: empty prompt (0 tokens); the engine cannot generate from nothing")
        room = b.max_model_len - prompt_len
        if room < 1:
            raise SampleError(
                f"row {row}: prompt of {prompt_len} tokens leaves no room to generate within "
                f"max_model_len={b.max_model_len} (verl's vLLM server rejects it the same way)"
            )
        if "max_tokens" in sp:
            mt = sp.pop("max_tokens")
        elif "max_new_tokens" in sp:
            mt = sp.pop("max_new_tokens")
        else:
            mt = min(b.response_length, b.prompt_length + b.response_length - prompt_len)
        return max(1, min(int(mt), room))

    def _fail_batch(self, exc: BaseException) -> None:
        """Fail the batch: every waiting caller gets ``exc`` (no caller waits for a sample that will never
        arrive); a running controller stops at its next step."""
        if self._batch is not None and self._batch.error is None:
            self._batch.error = exc
        if self._admit is not None:
            self._admit.cancel()
        if self._wake is not None:
            self._wake.set()
        if self._runner is None:
            for r in self._rows.values():
                if not r.future.done():
                    r.future.set_exception(exc)

    # -- the dispatch loop ----------------------------------------------------------------------------------------

    async def _run(self) -> None:
        ctl = self._ctl
        assert ctl is not None
        b = self._batch
        assert b is not None and self._wake is not None
        wake = self._wake
        t_start = t_done = time.time()
        running: dict[asyncio.Task, Any] = {}
        self._decision_s = 0.0
        if self._sd is not None:
            await self._sd.begin_batch(self._alive())
        try:
            while not (ctl.done and b.closed):
                if b.error is not None:
                    raise b.error
                self._dispatch(ctl, running)
                if not running and not ctl.done:
                    raise RuntimeError("Seer controller made no progress: nothing running and nothing dispatchable")
                waiter = asyncio.ensure_future(wake.wait())  # a call joined, or the batch ended
                done, _ = await asyncio.wait({*running, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if waiter in done:
                    wake.clear()
                else:
                    waiter.cancel()
                for task in done:
                    d = running.pop(task, None)
                    if isinstance(d, _Stream):
                        self._on_stream_done(ctl, d, task.result(), running)
                    elif isinstance(d, _Poll):
                        self._on_poll(ctl, d.engine_id, task.result(), running)
                    elif d is not None:
                        self._on_outcome(ctl, d, task.result(), running)
                if ctl.done and done - {waiter}:
                    t_done = time.time()  # the last request so far finished
            if b.error is not None:  # a call that could not join (it fits no engine)
                raise b.error
            for task in running:  # what is left: progress reads, and streamed calls cut or ending on their own
                task.cancel()
        except BaseException as exc:
            self._abort(running, exc)
            await self._end_speculation(None)
            raise
        self._last = self._summary(ctl, t_done - t_start)
        self._last["sd_metrics"] = await self._end_speculation(self._tail_start())
        if self._sd is not None:
            self._last["sd_engines"] = self._sd.engine_step_logs()

    def _alive(self) -> list[int]:
        return [i for i in range(len(self._engines)) if i not in self._dead]

    def _tail_start(self) -> float | None:
        """When the tail phase began: the finish of the sample that completed the first 90% (bench definition)."""
        ends = sorted(r.intervals[-1][2] for r in self._rows.values() if r.intervals)
        return ends[max(1, math.ceil(0.9 * len(ends))) - 1] if ends else None

    async def _end_speculation(self, tail_start: float | None) -> dict[str, float]:
        if self._sd is None:
            return {}
        try:
            return await self._sd.end_batch(self._alive(), tail_start)
        except Exception as exc:  # metrics only: never fail a finished batch for them
            logger.warning("Seer SD: end of batch bookkeeping failed: %s", exc)
            return {}

    def _make_controller(self) -> RolloutController:
        b = self._batch
        assert b is not None
        calls = [self._rows[i] for i in range(len(self._rows))]
        rows = [(b.groups[c.row], len(c.prompt_ids)) for c in calls]
        budgets = [c.budget for c in calls]
        true_lens = None if b.true_lens is None else [b.true_lens[c.row] for c in calls]
        try:
            if len(self._dead) == len(self._engines):
                raise EngineLossError(self._loss_message("no rollout engine is alive"))
            buffer = RequestBuffer.from_rows(rows, budgets, true_lens)
            states = [EngineState(i, e.capacity_tokens, e.block_size)
                      for i, e in enumerate(self._engines) if i not in self._dead]
            size = self._config.resolved_chunk_size(min(e.capacity_tokens for e in states), b.response_length,
                                                    min(e.block_size for e in states))
            config = dataclasses.replace(self._config, chunk_size=size)
            self._chunk_timeout_s = config.effective_chunk_timeout_s()
            try:
                return RolloutController(buffer, states, config)
            except NoEngineError as exc:
                if self._dead:
                    raise EngineLossError(self._loss_message(str(exc))) from exc
                raise
        except Exception as exc:  # fail every caller instead of hanging them
            self._abort({}, exc)
            raise

    def _dispatch(self, ctl: RolloutController, running: dict[asyncio.Task, Any]) -> None:
        t = time.perf_counter()
        for d in ctl.next_dispatches():
            if not self._stream:
                self._calls_made += 1
                running[asyncio.create_task(self._chunk(ctl, d))] = d
                continue
            st = self._streams.get(d.req_id)
            if st is not None and st.pending and st.engine_id == d.engine_id:
                self._adopt(st, d, running)
                continue
            if st is not None:  # it left its engine at the boundary: stop it there
                self._cut(st)
            self._start_stream(ctl, d, running)
        if self._stream:
            for st in [st for st in self._streams.values() if st.pending]:
                self._cut(st)  # its request waits for its next chunk: the engine stops generating for it
            self._schedule_polls(running)
        self._decision_s += time.perf_counter() - t

    # -- streamed chunks (seer.stream_chunks) ---------------------------------------------------------------------

    def _start_stream(self, ctl: RolloutController, d: Dispatch, running: dict[asyncio.Task, Any]) -> None:
        now = time.time()
        st = _Stream(f"seer-{d.req_id}-{d.chunk_index}-{d.dispatch_id}", d, 0, now, now)
        self._streams[d.req_id] = st
        self._calls_made += 1
        running[asyncio.create_task(self._stream_call(ctl, st))] = st

    def _adopt(self, st: _Stream, d: Dispatch, running: dict[asyncio.Task, Any]) -> None:
        """The request continues on the engine its call runs on: the call runs the next chunk too."""
        st.d, st.pending = d, False
        if st.done is not None:  # the call already returned past this boundary: deliver from its tokens

            async def again() -> _ChunkDone:
                return st.done

            running[asyncio.create_task(again())] = st

    def _cut(self, st: _Stream) -> None:
        """Abort ``st``'s call on its engine (best effort: a lost engine stops it anyway)."""
        st.cut = True
        self._streams.pop(st.req_id, None)
        if st.done is None and st.engine_id not in self._dead:
            self._cuts += 1
            try:
                ack = asyncio.ensure_future(
                    self._handles[st.engine_id].__ray_call__.remote(self._backend.abort_in_server, [st.rid]))
            except Exception as exc:  # noqa: BLE001 - the call's own timeout and the liveness probe cover it
                logger.debug("Seer: abort of %s failed: %s", st.rid, exc)
            else:  # not awaited: its failure (a lost engine) shows in the call itself
                ack.add_done_callback(lambda f: f.cancelled() or f.exception())

    def _schedule_polls(self, running: dict[asyncio.Task, Any]) -> None:
        engines = {st.engine_id for st in self._streams.values() if not st.pending and st.done is None}
        for eid in engines - self._polls:
            self._polls.add(eid)
            running[asyncio.create_task(self._poll(eid))] = _Poll(eid)

    async def _poll(self, eid: int) -> tuple[dict[str, tuple[int, int]], dict[str, tuple]] | None:
        """After :data:`STREAM_POLL_S`, how far each streamed call on engine ``eid`` has got (None: no answer, which
        proves nothing: the calls' own timeouts and the liveness probe cover a lost engine)."""
        await asyncio.sleep(STREAM_POLL_S)
        wanted = {st.rid: (st.offset, st.boundary) for st in self._streams.values()
                  if st.engine_id == eid and not st.pending and st.done is None}
        if not wanted:
            return wanted, {}
        try:
            got = await bounded(self._handles[eid].__ray_call__.remote(self._backend.progress_in_server, wanted),
                                self._health_timeout_s, "progress read")
        except Exception:  # noqa: BLE001
            return None
        return wanted, got

    def _on_poll(self, ctl: RolloutController, eid: int, result: Any, running: dict[asyncio.Task, Any]) -> None:
        self._polls.discard(eid)
        if not result:
            return
        wanted, got = result
        now = time.time()
        if got:
            self._last_ok[eid] = now
        for st in list(self._streams.values()):
            if st.engine_id != eid or st.pending or st.done is not None or st.rid not in got:
                continue
            n, tokens, logprobs = got[st.rid]
            if n > st.offset:
                st.t_progress = now
            if tokens is None or wanted.get(st.rid) != (st.offset, st.boundary) or len(tokens) != st.d.max_tokens:
                continue
            row = self._rows[st.req_id]
            if not row.sampling_params.get("logprobs") or logprobs is None:
                logprobs = [0.0] * len(tokens)
            self._stream_chunk(ctl, st, _ChunkDone(tokens, logprobs, dict(row.extra_fields), st.t_chunk, now), running)

    def _on_stream_done(self, ctl: RolloutController, st: _Stream, outcome: Any,
                        running: dict[asyncio.Task, Any]) -> None:
        """``st``'s call returned (or a delivery from its buffered tokens is due)."""
        if st.cut or self._streams.get(st.req_id) is not st:
            return
        if not isinstance(outcome, _ChunkDone):  # the engine is lost, or the sample's own error
            self._streams.pop(st.req_id, None)
            if not st.pending:
                self._on_outcome(ctl, st.d, outcome, running)
            return
        st.done = outcome
        if st.pending:  # returned after its boundary was read: the next dispatch adopts or cuts it
            return
        hi = min(st.boundary, len(outcome.tokens))
        self._stream_chunk(ctl, st, _ChunkDone(outcome.tokens[st.offset:hi], outcome.logprobs[st.offset:hi],
                                               outcome.extra, st.t_chunk, outcome.t1), running)

    def _stream_chunk(self, ctl: RolloutController, st: _Stream, chunk: _ChunkDone,
                      running: dict[asyncio.Task, Any]) -> None:
        """The chunk ``st`` runs is complete (its boundary read from the engine, or the call returned)."""
        d = st.d
        st.offset += len(chunk.tokens)
        st.t_chunk = chunk.t1
        self._on_outcome(ctl, d, chunk, running)
        req = ctl.request(d.req_id)
        if req.finished:  # its call ends on its own (a stop token, or its whole budget)
            if self._streams.get(st.req_id) is st:
                del self._streams[st.req_id]
            return
        st.pending = True

    def _on_outcome(self, ctl: RolloutController, d: Dispatch, outcome: Any, running: dict[asyncio.Task, Any]) -> None:
        if not ctl.is_live(d):  # its engine was declared lost while it ran: the request was re-queued
            return
        row = self._rows[d.req_id]
        if isinstance(outcome, _EngineLost):
            row.lost.append((d.engine_id, outcome.t0, outcome.t1))
            self._engine_lost(ctl, d.engine_id, outcome.reason, running)
            return
        if isinstance(outcome, _ChunkFailed):
            raise SampleError(
                f"row {d.req_id}: chunk {d.chunk_index} failed on healthy engine {self._addresses[d.engine_id]} "
                f"(prompt {len(row.prompt_ids)} + {ctl.request(d.req_id).generated} generated tokens): "
                f"{_short(outcome.error)}"
            ) from outcome.error
        row.intervals.append((d.engine_id, outcome.t0, outcome.t1))
        self._last_ok[d.engine_id] = outcome.t1
        row.extra_fields = outcome.extra
        tokens = outcome.tokens
        stopped = len(tokens) < d.max_tokens or (len(tokens) > 0 and tokens[-1] in row.stop_ids)
        start = ctl.request(d.req_id).generated
        req = ctl.complete(d, tokens, outcome.logprobs, stopped)
        if self._sd is not None:  # siblings on other engines draft from these tokens (via the draft server)
            self._sd.chunk_done(d.engine_id, req, start, tokens)
        if req.finished:
            row.future.set_result({
                "token_ids": list(req.token_ids),
                "log_probs": list(req.log_probs) if row.sampling_params.get("logprobs") else None,
                "stop_reason": "completed",
                "num_preempted": 0,
                "extra_fields": dict(outcome.extra),
            })

    def _engine_lost(self, ctl: RolloutController, eid: int, reason: str, running: dict[asyncio.Task, Any]) -> None:
        """Declare engine ``eid`` lost: re-queue its in-flight requests (they resume from their last completed
        chunk on the other engines) and drop its running chunk calls."""
        self._dead[eid] = reason
        t = time.time()
        for task, d in list(running.items()):
            if d.engine_id == eid:
                task.cancel()
                del running[task]
                if isinstance(d, _Poll):
                    self._polls.discard(eid)
                elif not (isinstance(d, _Stream) and d.pending):
                    self._rows[d.req_id].lost.append((eid, t, t))
        for st in [st for st in self._streams.values() if st.engine_id == eid]:
            st.cut = True  # its engine is gone: the request resumes elsewhere from its last completed chunk
            del self._streams[st.req_id]
        try:
            requeued = ctl.fail_engine(eid)
        except NoEngineError as exc:
            self._record_failure(eid, reason, t, [])
            raise EngineLossError(self._loss_message(str(exc))) from exc
        self._record_failure(eid, reason, t, [self._rows[r].row for r in requeued])

    def _record_failure(self, eid: int, reason: str, t: float, requeued: list[int]) -> None:
        b = self._batch
        event = {"engine": eid, "address": self._addresses[eid], "reason": reason, "time": t,
                 "t_s": round(t - (b.t0 if b else t), 3), "requeued_rows": list(requeued)}
        self._failures.append(event)
        alive = len(self._engines) - len(self._dead)
        logger.warning("Seer: rollout engine %d (%s) lost: %s; %d in-flight request(s) resume from their last "
                       "completed chunk on %d surviving engine(s): rows %s", eid, event["address"], reason,
                       len(requeued), alive, requeued)

    def _loss_message(self, detail: str) -> str:
        dead = "; ".join(f"engine {i} ({self._addresses[i]}): {r}" for i, r in sorted(self._dead.items()))
        alive = [self._addresses[i] for i in range(len(self._engines)) if i not in self._dead]
        return (f"Seer rollout cannot finish: {len(self._dead)} of {len(self._engines)} rollout engines lost "
                f"[{dead}]; alive: {alive or 'none'} ({detail})")

    def _abort(self, running: dict[asyncio.Task, Any], exc: BaseException) -> None:
        for task in running:
            task.cancel()
        for st in list(self._streams.values()):
            self._cut(st)
        err = exc if isinstance(exc, Exception) else RuntimeError(str(exc))
        for calls in self._calls.values():
            for r in calls:
                if not r.future.done():
                    r.future.set_exception(err)

    def _summary(self, ctl: RolloutController, wall: float) -> dict[str, Any]:
        b = self._batch
        records: dict[int, list[tuple[int, float, float]]] = {}
        lost: dict[int, list[tuple[int, float, float]]] = {}
        for row in sorted(self._calls):
            for call in self._calls[row]:
                records.setdefault(row, []).extend(call.intervals)
                if call.lost:
                    lost.setdefault(row, []).extend(call.lost)
        return {
            "metrics": ctl.metrics,
            "decision_s": self._decision_s,
            "wall_s": wall,
            # per row: (engine index, start, end) of every completed chunk of all its turns, wall-clock seconds
            "records": records,
            # per row: chunks lost with their engine (engine index, start, end)
            "lost_chunks": lost,
            # generate calls (turns) and rows, rows that joined after the controller started, and the seconds
            # between the first call and the start (waiting for the batch's rows)
            "requests": len(self._rows),
            "rows": len(self._calls),
            "late_rows": b.late_rows if b else 0,
            "admission_s": (b.started - b.first_call) if b and b.started and b.first_call else 0.0,
            "engine_failures": list(self._failures),
            "engines_alive": len(self._engines) - len(self._dead),
            "policy": self._config.policy,
            "chunk_size": ctl.chunk_size,
            # engine calls (one per chunk, or per run of chunks on one engine with seer.stream_chunks) and streamed
            # calls cut at a boundary (their request waited or moved)
            "engine_calls": self._calls_made,
            "stream_cuts": self._cuts,
            # finished lengths per group: how much siblings share their lengths (timing_s/seer/group_length_icc)
            "group_lengths": _group_lengths(ctl),
        }

    # -- one chunk on one engine ----------------------------------------------------------------------------------

    async def _chunk(self, ctl: RolloutController, d: Dispatch) -> _ChunkDone | _EngineLost | _ChunkFailed:
        """Run one chunk; classify a failure as the engine's (lost) or the sample's own. Never raises."""
        req = ctl.request(d.req_id)
        rid = (self._sd.request_id(d, req) if self._sd is not None
               else f"seer-{d.req_id}-{d.chunk_index}-{d.dispatch_id}")
        t0 = time.time()
        return await self._guarded(ctl, d, d.max_tokens, rid, lambda: t0, lambda: False)

    async def _stream_call(self, ctl: RolloutController, st: _Stream) -> _ChunkDone | _EngineLost | _ChunkFailed:
        """Run ``st``'s call: the request's whole remaining budget from its context now. Like :meth:`_chunk`, except
        that its timeout counts from its last progress (it spans several chunks). Never raises."""
        return await self._guarded(ctl, st.d, ctl.request(st.req_id).remaining, st.rid, lambda: st.t_progress,
                                   lambda: st.cut)

    async def _guarded(self, ctl: RolloutController, d: Dispatch, max_tokens: int, rid: str, since: Any,
                       cut: Any) -> _ChunkDone | _EngineLost | _ChunkFailed:
        """One engine call of ``max_tokens`` from the request's prompt plus every completed chunk (it resumes exactly
        there), watched for engine loss: no answer within ``seer.chunk_timeout_s`` of ``since()`` while no other chunk
        came back from the engine, or the engine found dead. ``cut()``: the call was aborted on purpose. Never
        raises."""
        req = ctl.request(d.req_id)
        row = self._rows[d.req_id]
        sp = dict(row.sampling_params)
        sp["max_tokens"] = max_tokens
        prompt = row.prompt_ids + list(req.token_ids)
        t0 = time.time()
        timeout = self._chunk_timeout_s
        call = asyncio.ensure_future(self._call(d, prompt, sp, rid))
        try:
            while not (await asyncio.wait({call}, timeout=min(LIVENESS_PROBE_S, timeout)))[0]:
                if cut():
                    continue  # aborted: its call returns soon
                now = time.time()
                if now - since() >= timeout and now - self._last_ok.get(d.engine_id, 0.0) > timeout:
                    call.cancel()
                    return _EngineLost(f"no answer to a chunk within seer.chunk_timeout_s={timeout:g}s", t0, now)
                # still running: ask whether the engine is alive. vLLM marks itself dead when its EngineCore process
                # exits (killed, OOM) but leaves the calls in flight waiting: without this, only the chunk timeout
                # (hours by default) would find it. Otherwise other chunks came back meanwhile, or the engine is
                # slow: keep waiting
                dead = await self._probe_liveness(d.engine_id)
                if dead is not None:
                    call.cancel()
                    return _EngineLost(f"{dead} while a chunk ran", t0, time.time())
            out = call.result()
            if out.stop_reason == "aborted" and not cut():
                raise RuntimeError(f"the engine aborted chunk {d.chunk_index} of row {d.req_id}")
        except asyncio.CancelledError:
            call.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - classified below
            return await self._classify(d.engine_id, exc, t0)
        tokens = list(out.token_ids)
        logprobs = list(out.log_probs or []) if sp.get("logprobs") else [0.0] * len(tokens)
        return _ChunkDone(tokens, logprobs, dict(out.extra_fields or {}), t0, time.time())

    async def _call(self, d: Dispatch, prompt: list[int], sp: dict[str, Any], request_id: str) -> Any:
        # priority: the request's start rank; engines with scheduling_policy=priority serve older requests first
        return await self._handles[d.engine_id].generate.remote(
            prompt_ids=prompt, sampling_params=sp, request_id=request_id, priority=d.priority)

    async def _classify(self, eid: int, exc: BaseException, t0: float) -> _EngineLost | _ChunkFailed:
        if _is_actor_death(exc):
            return _EngineLost(f"server actor died ({_short(exc, 160)})", t0, time.time())
        healthy, why = await self._health(eid)
        if healthy:
            return _ChunkFailed(exc, t0, time.time())
        return _EngineLost(f"{why} after a chunk failed with {_short(exc, 160)}", t0, time.time())

    async def _probe_liveness(self, eid: int) -> str | None:
        """Why engine ``eid`` is certainly dead (its server actor is gone, or the engine reports its core dead), or
        None. One probe per engine at a time, shared by every chunk waiting on it; a probe that does not answer
        within ``seer.health_timeout_s`` proves nothing (a busy engine): the chunk timeout covers hangs."""
        probe = self._probes.get(eid)
        if probe is None or probe.done():
            probe = self._probes[eid] = asyncio.ensure_future(self._liveness(eid))
        return await asyncio.shield(probe)

    async def _liveness(self, eid: int) -> str | None:
        return await lost_reason(self._handles[eid], self._health_timeout_s, self._backend)

    async def _health(self, eid: int) -> tuple[bool, str]:
        """(healthy, why): the server actor answers within ``seer.health_timeout_s`` and its engine does not report
        itself dead."""

        async def probe() -> bool:
            return await self._handles[eid].__ray_call__.remote(self._backend.errored_in_server)

        try:
            errored = await bounded(probe(), self._health_timeout_s, "health check")
        except asyncio.TimeoutError:
            return False, f"no answer to a health check within seer.health_timeout_s={self._health_timeout_s:g}s"
        except Exception as exc:  # noqa: BLE001
            return False, f"health check failed ({_short(exc, 160)})"
        if errored:
            return False, f"{self._backend.name} reports its engine core dead"
        return True, "healthy"
