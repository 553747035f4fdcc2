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

:func:`auto_chunk_size` picks ``chunk_size`` when the config leaves it ``null``: an eighth of the response
length, as a power of two.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .errors import ChunkError
from .request import RolloutRequest

__all__ = ["chunk_budget", "validate_chunk", "apply_chunk", "auto_chunk_size", "AUTO_CHUNKS_PER_RESPONSE",
           "AUTO_CHUNK_MIN_TOKENS"]

#: ``auto_chunk_size``: a full-length response is divided into this many chunks. Every running chunk reserves its
#: growth in KV on top of its context, so the chunk size trades concurrency (and how finely the tail is re-balanced)
#: against chunk boundaries (a round trip and a one-token prefill each). One-eighth of the response was the best or
#: within 2% of the best chunk size on 14 of the 15 simulated shapes tried (CPU engines of 1.4K-11K KV tokens with
#: 512- and 1,024-token responses, and the paper's Moonlight workload: 8,192-token chunks for 65,536-token responses,
#: the paper's scale); the exception: 512-token responses on 5.6K-token engines, where 128-token chunks beat 64 by 5%
#: (docs/kv_pressure.md, "Automatic chunk size").
AUTO_CHUNKS_PER_RESPONSE = 8
#: ... and a chunk has at least this many tokens.
AUTO_CHUNK_MIN_TOKENS = 16


def auto_chunk_size(response_length: int) -> int:
    """The chunk size for ``seer.chunk_size: null``: ``response_length / 8`` rounded down to a power of two, at least
    16 tokens (512 -> 64, 1,024 -> 128, 40,960 -> 4,096, 65,536 -> 8,192).

    Args:
        response_length: the longest response of the rollout (verl's ``response_length``), in tokens.

    Raises ValueError for a response length below 1.
    """
    if not isinstance(response_length, int) or isinstance(response_length, bool) or response_length < 1:
        raise ValueError(f"auto_chunk_size: response_length must be an integer >= 1 (tokens); got {response_length!r}")
    size = 2 ** int(math.log2(max(response_length // AUTO_CHUNKS_PER_RESPONSE, 1)))
    return max(AUTO_CHUNK_MIN_TOKENS, size)


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
