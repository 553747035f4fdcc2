"""The Seer rollout service: a Ray actor that runs Algorithm 2 against verl's own vLLM servers.

It is the "Context Manager" + "Request Buffer" of the paper (Fig. 5) for one verl job. verl's agent-loop workers
still build prompts and post-process outputs exactly as in stock verl; their ``generate`` calls (one per sample)
land here instead of going straight to an engine (:class:`~seer_verl.integration.client.SeerLLMServerClient`).
Once every sample of the batch has arrived, the engine-agnostic :class:`~seer_verl.core.RolloutController`
decides which chunk runs where; each chunk is a plain ``vLLMHttpServer.generate`` call with the prompt plus the
tokens generated so far and ``max_tokens`` = the chunk budget, and the sample's caller gets one ``TokenOutput``
with the stitched tokens and log-probs when its last chunk ends.

Why chunk continuation is exact: sampling is autoregressive and token-in/token-out, so continuing from
``prompt + generated`` draws the next token from the same conditional distribution as an uninterrupted
generation would (no per-request seed, no penalties over generated tokens in verl's default sampling params);
vLLM's prefix cache keeps the continuation cheap on the engine that ran the previous chunk.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from seer_verl.core import EngineState, RequestBuffer, RolloutController, SeerConfig


@dataclass
class _Row:
    row: int
    prompt_ids: list[int]
    sampling_params: dict[str, Any]
    future: asyncio.Future
    budget: int
    intervals: list[tuple[int, float, float]] = field(default_factory=list)
    extra_fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class EngineInfo:
    """One rollout engine as the controller sees it."""

    address: str
    capacity_tokens: int
    block_size: int


class SeerRolloutService:
    """Ray actor (async). One rollout batch at a time, as in synchronous RL.

    Args:
        servers: ``{address: vLLMHttpServer handle}`` in a fixed engine order.
        engines: capacity and block size of each engine (same order).
        seer_config: the ``seer`` config node (policy, chunk_size, ...).
        eos_token_ids: token ids that end a sample (to tell EOS from the chunk cap when a chunk ends exactly at
            its budget).
        max_inflight_per_engine: vLLM's ``max_num_seqs`` (chunks beyond it would queue inside the engine).
    """

    def __init__(
        self,
        servers: dict[str, Any],
        engines: list[EngineInfo],
        seer_config: dict[str, Any],
        eos_token_ids: list[int],
        max_inflight_per_engine: int | None = None,
    ) -> None:
        self._addresses = list(servers)
        self._handles = [servers[a] for a in self._addresses]
        self._engines = engines
        cfg = dict(seer_config)
        if max_inflight_per_engine is not None and cfg.get("max_inflight_per_engine") is None:
            cfg["max_inflight_per_engine"] = max_inflight_per_engine
        if cfg.get("chunk_align") is None:  # block-aligned chunk ends: one-token continuation prefills
            cfg["chunk_align"] = min(e.block_size for e in engines)
        self._config = SeerConfig.from_mapping(cfg)
        self._eos = set(int(t) for t in eos_token_ids)
        self._batch: dict[str, Any] | None = None
        self._rows: dict[int, _Row] = {}
        self._runner: asyncio.Task | None = None
        self._last: dict[str, Any] = {}

    # -- batch lifecycle (called by the manager) ----------------------------------------------------------------

    def begin_batch(self, groups: list[int], prompt_length: int, response_length: int, max_model_len: int,
                    true_lens: list[int] | None = None) -> None:
        """Announce a batch: the group of each row (siblings share a group) and verl's length settings."""
        if self._batch is not None:
            raise RuntimeError("SeerRolloutService: a batch is already running (synchronous rollout only)")
        self._batch = {"groups": list(groups), "true_lens": true_lens, "t0": time.time(),
                       "prompt_length": prompt_length, "response_length": response_length,
                       "max_model_len": max_model_len}
        self._rows = {}
        self._runner = None
        self._last = {}

    async def end_batch(self) -> dict[str, Any]:
        """Wait for the batch to finish; return its metrics and per-row chunk records. The service is ready for
        the next batch afterwards even if this one failed (the failure is re-raised)."""
        try:
            if self._runner is not None:
                await self._runner
        finally:
            for r in self._rows.values():  # rows of a batch that never started (a sibling's caller failed first)
                if not r.future.done():
                    r.future.set_exception(RuntimeError("Seer batch ended before this sample could run"))
            self._batch = None
            self._rows = {}
            self._runner = None
        return self._last

    # -- per-sample calls (from SeerLLMServerClient in verl's agent-loop workers) --------------------------------

    async def generate(self, row: int, prompt_ids: list[int], sampling_params: dict[str, Any]) -> dict[str, Any]:
        b = self._batch
        if b is None:
            raise RuntimeError("SeerRolloutService.generate called outside begin_batch/end_batch")
        n = len(b["groups"])
        if not 0 <= row < n:
            raise ValueError(f"row {row} outside the batch of {n} samples")
        if row in self._rows:
            raise ValueError(f"row {row} submitted twice")
        fut = asyncio.get_running_loop().create_future()
        sp = dict(sampling_params)
        self._rows[row] = _Row(row, list(prompt_ids), sp, fut, budget=self._budget(len(prompt_ids), sp))
        if len(self._rows) == n:
            self._runner = asyncio.create_task(self._run())
        return await fut

    def _budget(self, prompt_len: int, sp: dict[str, Any]) -> int:
        """The sample's total token budget, computed exactly as verl's vLLMHttpServer.generate does."""
        b = self._batch
        room = b["max_model_len"] - prompt_len
        if room < 1:
            raise ValueError(f"prompt of {prompt_len} tokens leaves no room within max_model_len={b['max_model_len']}")
        if "max_tokens" in sp:
            mt = sp.pop("max_tokens")
        elif "max_new_tokens" in sp:
            mt = sp.pop("max_new_tokens")
        else:
            mt = min(b["response_length"], b["prompt_length"] + b["response_length"] - prompt_len)
        return max(1, min(int(mt), room))

    # -- the dispatch loop ----------------------------------------------------------------------------------------

    async def _run(self) -> None:
        b = self._batch
        assert b is not None
        t_start = time.time()
        rows = [(b["groups"][i], len(self._rows[i].prompt_ids)) for i in range(len(b["groups"]))]
        budgets = [self._rows[i].budget for i in range(len(b["groups"]))]
        buffer = RequestBuffer.from_rows(rows, budgets, b["true_lens"])
        states = [EngineState(i, e.capacity_tokens, e.block_size) for i, e in enumerate(self._engines)]
        try:
            ctl = RolloutController(buffer, states, self._config)
        except Exception as exc:  # fail every caller instead of hanging them
            for r in self._rows.values():
                if not r.future.done():
                    r.future.set_exception(exc)
            raise
        running: dict[asyncio.Task, Any] = {}
        decision_s = 0.0
        try:
            while not ctl.done:
                t = time.perf_counter()
                for d in ctl.next_dispatches():
                    running[asyncio.create_task(self._chunk(ctl, d))] = d
                decision_s += time.perf_counter() - t
                if not running:
                    raise RuntimeError("Seer controller made no progress: nothing running and nothing dispatchable")
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    d = running.pop(task)
                    tokens, logprobs, extra, t0, t1 = task.result()
                    row = self._rows[d.req_id]
                    row.intervals.append((d.engine_id, t0, t1))
                    row.extra_fields = extra
                    stopped = len(tokens) < d.max_tokens or (len(tokens) > 0 and tokens[-1] in self._eos)
                    req = ctl.complete(d, tokens, logprobs, stopped)
                    if req.finished:
                        row.future.set_result({
                            "token_ids": list(req.token_ids),
                            "log_probs": list(req.log_probs) if row.sampling_params.get("logprobs") else None,
                            "stop_reason": "completed",
                            "num_preempted": 0,
                            "extra_fields": dict(extra),
                        })
        except BaseException as exc:
            for task in running:
                task.cancel()
            for r in self._rows.values():
                if not r.future.done():
                    r.future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
            raise
        wall = time.time() - t_start
        m = ctl.metrics
        self._last = {
            "metrics": m,
            "decision_s": decision_s,
            "wall_s": wall,
            # per row: (engine index, start, end) of every chunk, wall-clock seconds
            "records": {r.row: list(r.intervals) for r in self._rows.values()},
            "policy": self._config.policy,
            "chunk_size": self._config.chunk_size,
        }

    async def _chunk(self, ctl: RolloutController, d: Any):
        req = ctl.request(d.req_id)
        row = self._rows[d.req_id]
        sp = dict(row.sampling_params)
        sp["max_tokens"] = d.max_tokens
        t0 = time.time()
        out = await self._handles[d.engine_id].generate.remote(
            prompt_ids=row.prompt_ids + list(req.token_ids),
            sampling_params=sp,
            request_id=f"seer-{d.req_id}-{d.chunk_index}-{d.dispatch_id}",
        )
        t1 = time.time()
        if out.stop_reason == "aborted":
            raise RuntimeError(f"engine {self._addresses[d.engine_id]} aborted chunk {d.chunk_index} of row {d.req_id}")
        tokens = list(out.token_ids)
        if sp.get("logprobs"):
            logprobs = list(out.log_probs or [])
        else:
            logprobs = [0.0] * len(tokens)
        return tokens, logprobs, dict(out.extra_fields or {}), t0, t1
