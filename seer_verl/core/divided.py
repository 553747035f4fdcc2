"""Divided rollout: chunk budgeting and chunk accounting (paper §3.2, Algorithm 2 line 16).

A request is generated as a sequence of chunks. Each chunk is submitted to an engine as an ordinary
generation request whose ``max_tokens`` is the chunk budget::

    budget = min(chunk_size, ori_max_tokens - generated_tokens)

so every chunk has a bounded, known KV footprint (current context plus at most ``chunk_size`` new
tokens). When the chunk returns, its tokens are appended to the request, which either finishes (EOS /
stop token, or its original ``max_tokens`` reached) or goes back to the Request Buffer to be
re-dispatched, possibly to another engine.

:func:`apply_chunk` is the only place where a request's tokens grow; it checks the engine's result
against the budget that was dispatched before touching the request.

:func:`auto_chunk_size` picks ``chunk_size`` when the config leaves it ``null``: about 1/45 of the smallest
engine's KV tokens, at most an eighth of the response length.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .errors import ChunkError
from .request import RolloutRequest

__all__ = ["chunk_budget", "validate_chunk", "apply_chunk", "auto_chunk_size",
           "AUTO_CHUNK_KV_SHARE", "AUTO_CHUNK_MIN_CHUNKS", "AUTO_CHUNK_MIN_TOKENS"]

#: ``auto_chunk_size``: a chunk of about 1/45 of the smallest engine's KV tokens. Every running chunk reserves its
#: growth in KV on top of its context, so the chunk size trades concurrency against chunk boundaries (a round trip
#: and a one-token prefill each) and against how finely the tail is re-balanced. In the simulator the best size
#: follows the KV per engine: 64 tokens on CPU engines of 2.9K KV tokens, 128 at 5.6K, and 2,048 on the paper's
#: Moonlight engines at ``gpu_memory_utilization`` 0.5 without a global KV pool (128.6K tokens, verl's regime: 8,192
#: lost 14% there). docs/kv_pressure.md, "Automatic chunk size", has the 20 shapes tried.
AUTO_CHUNK_KV_SHARE = 45
#: ... and at most 1/8 of the response length, so a full-length response takes at least 8 chunks (the paper's long
#: requests take 5-12). With a global KV pool and ~1.2M KV tokens per engine the KV share alone would give 32K-token
#: chunks; simulated Moonlight is best at 8,192 = 1/8 of its 65,536-token responses there (16,384 lost 7%).
AUTO_CHUNK_MIN_CHUNKS = 8
#: ... and at least this many tokens.
AUTO_CHUNK_MIN_TOKENS = 16


def auto_chunk_size(kv_capacity_tokens: int, response_length: int, min_tokens: int = AUTO_CHUNK_MIN_TOKENS) -> int:
    """The chunk size for ``seer.chunk_size: null``: a power of two near ``kv_capacity_tokens / 45``, at most
    ``response_length / 8`` (rounded down to a power of two) and at least ``min_tokens`` (16).

    Args:
        kv_capacity_tokens: the KV capacity of the smallest engine, in tokens.
        response_length: the longest response of the rollout (verl's ``response_length``), in tokens.
        min_tokens: the floor; :meth:`SeerConfig.resolved_chunk_size` passes the engines' KV block size with
            ``kv_reserve: auto`` (a chunk shorter than a block then only adds boundaries).

    Raises ValueError for a capacity or response length below 1.
    """
    if kv_capacity_tokens < 1 or response_length < 1:
        raise ValueError(f"auto_chunk_size needs kv_capacity_tokens >= 1 and response_length >= 1; "
                         f"got {kv_capacity_tokens!r}, {response_length!r}")
    size = 2 ** round(math.log2(max(kv_capacity_tokens / AUTO_CHUNK_KV_SHARE, 1.0)))
    cap = 2 ** int(math.log2(max(response_length // AUTO_CHUNK_MIN_CHUNKS, 1)))
    return max(AUTO_CHUNK_MIN_TOKENS, min_tokens, min(size, cap))


def chunk_budget(req: RolloutRequest, chunk_size: int, align: int = 0) -> int:
    """``max_tokens`` of the request's next chunk: ``min(chunk_size, remaining)``, optionally block-aligned.

    With ``align`` = the engine's KV block size (> 1), a chunk that does not finish the request is shortened (by
    less than ``align`` tokens) so that it ends one token past a block boundary: the next chunk's context is then
    ``k * align + 1`` tokens, the engine's prefix cache restores all ``k`` full blocks, and continuing costs a
    one-token prefill instead of recomputing up to a block (vLLM caches full blocks only and caps a hit at
    ``context - 1`` tokens). The budget never exceeds ``min(chunk_size, remaining)``.

    Raises :class:`ChunkError` for a finished request (it has no next chunk) and ``ValueError`` for a
    non-positive ``chunk_size``.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if req.finished:
        raise ChunkError(f"request {req.req_id} is finished ({req.finish_reason}); it has no next chunk")
    remaining = req.remaining
    if remaining <= 0:  # cannot happen for an unfinished request built by RequestBuffer
        raise ChunkError(f"request {req.req_id} has no budget left but is not marked finished")
    budget = chunk_size if chunk_size < remaining else remaining
    if align > 1 and budget < remaining:
        ctx = req.prompt_len + req.generated
        aligned_end = ((ctx + budget - 1) // align) * align + 1
        if aligned_end > ctx:
            budget = aligned_end - ctx
    return budget


def validate_chunk(
    req: RolloutRequest,
    token_ids: Sequence[int],
    log_probs: Sequence[float],
    stopped: bool,
    max_tokens_of_chunk: int,
) -> None:
    """Check an engine's chunk result without modifying the request; raise :class:`ChunkError` if bad.

    Rules: the request must be unfinished; the chunk budget must be between 1 and the request's
    remaining budget; the engine may not return more tokens than the budget; there must be exactly
    one log-prob per token; and a chunk that returns fewer tokens than its budget must be a stop
    (``stopped=True``): an engine ends a chunk early only on EOS or a stop token/string.
    """
    if req.finished:
        raise ChunkError(f"request {req.req_id} already finished ({req.finish_reason}); refusing another chunk")
    if not 1 <= max_tokens_of_chunk <= req.remaining:
        raise ChunkError(
            f"request {req.req_id}: chunk budget {max_tokens_of_chunk} is outside 1..{req.remaining} "
            f"(remaining = max_tokens {req.max_tokens} - generated {req.generated})"
        )
    n = len(token_ids)
    if n > max_tokens_of_chunk:
        raise ChunkError(
            f"request {req.req_id}: engine returned {n} tokens for a chunk budget of "
            f"{max_tokens_of_chunk} (max_tokens of the chunk was not honoured)"
        )
    if len(log_probs) != n:
        raise ChunkError(f"request {req.req_id}: {len(log_probs)} log-probs for {n} tokens; need one per token")
    if n < max_tokens_of_chunk and not stopped:
        raise ChunkError(
            f"request {req.req_id}: engine returned {n} < {max_tokens_of_chunk} tokens without "
            "stopping; a chunk may end early only on EOS/stop (pass stopped=True), otherwise the "
            "engine must produce the whole budget (check the engine's max_model_len)"
        )


def apply_chunk(
    req: RolloutRequest,
    token_ids: Sequence[int],
    log_probs: Sequence[float],
    stopped: bool,
    max_tokens_of_chunk: int,
) -> bool:
    """Append a completed chunk to ``req``; return True if the request is now finished.

    ``stopped`` is True when the engine ended the chunk on EOS or a stop token/string (vLLM
    ``finish_reason == "stop"``). The request finishes with reason ``"stop"`` in that case, and with
    ``"length"`` when it reaches its original ``max_tokens`` without stopping. Otherwise it stays
    unfinished and its next chunk can be dispatched. ``req.chunks`` is incremented.

    The result is validated first (:func:`validate_chunk`); on error the request is unchanged.
    """
    validate_chunk(req, token_ids, log_probs, stopped, max_tokens_of_chunk)
    req.token_ids.extend(token_ids)
    req.log_probs.extend(log_probs)
    req.chunks += 1
    if stopped:
        req.finished = True
        req.finish_reason = "stop"
    elif req.remaining == 0:
        req.finished = True
        req.finish_reason = "length"
    return req.finished
