"""vLLM behind verl's ``vLLMHttpServer`` (verl 0.9.1, vLLM 0.32; the CPU build too): the server actor holds vLLM's
``AsyncLLM`` as ``server.engine``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from . import register_backend

__all__ = ["VLLM"]


@dataclass(frozen=True)
class VLLMBackend:
    name: str = "vllm"
    metrics: dict[str, str] = field(default_factory=lambda: {
        "vllm:num_requests_running": "running",
        "vllm:num_requests_waiting": "waiting",
        "vllm:kv_cache_usage_perc": "kv_usage",
        "vllm:num_preemptions_total": "preemptions",
        "vllm:num_preemptions": "preemptions",
        "vllm:generation_tokens_total": "gen_tokens",
        "vllm:generation_tokens": "gen_tokens",
        # prompt tokens of newly admitted requests (a request resumed after a preemption is not counted again) and
        # how many of them the prefix cache supplied: their difference is the prefill the engine computed
        "vllm:prompt_tokens_total": "prompt_tokens",
        "vllm:prompt_tokens": "prompt_tokens",
        "vllm:prompt_tokens_cached_total": "cached_tokens",
        "vllm:prompt_tokens_cached": "cached_tokens",
    })
    engine_kwargs_key: str = "vllm"

    def capacity_in_server(self, server: Any) -> tuple[int, int]:
        """vLLM's own ``num_gpu_blocks`` (what the engine core computed from its KV budget) minus the null block
        its KV manager keeps, times the block size; ``(0, block)`` if the engine has no blocks yet."""
        cc = server.engine.vllm_config.cache_config
        blocks, block = int(cc.num_gpu_blocks or 0), int(cc.block_size)
        return max(blocks - 1, 0) * block, block

    def errored_in_server(self, server: Any) -> bool:
        engine = getattr(server, "engine", None)
        return bool(engine is None or engine.errored)

    def rpc_in_server(self, server: Any, method: str, args: tuple, timeout: float) -> list[Any]:
        """``collective_rpc`` on the engine's workers, scheduled on the loop where vLLM's AsyncLLM client lives.

        ``__ray_call__`` runs this synchronously on the server actor's Ray event loop, which serves nothing else
        (not even ``generate``) meanwhile. So it waits in short slices and gives up as soon as vLLM reports its
        engine dead: a call sent just before the EngineCore died is never answered, and waiting for its timeout
        would hold up every call to the server, the failing ``generate`` calls and Seer's liveness probe too."""
        import concurrent.futures
        import time

        engine = server.engine
        if engine.errored:
            raise RuntimeError(f"vLLM engine is dead; {method} not sent")
        handler = getattr(engine, "output_handler", None)
        if handler is None:
            raise RuntimeError("vLLM engine has no running output handler (not started in an event loop?)")
        loop = handler.get_loop()
        fut = asyncio.run_coroutine_threadsafe(engine.collective_rpc(method, timeout=timeout, args=args), loop)
        deadline = time.monotonic() + timeout + 5
        while True:
            try:
                return fut.result(0.25)
            except concurrent.futures.TimeoutError:
                if engine.errored:
                    fut.cancel()
                    raise RuntimeError(f"vLLM engine died during {method}") from None
                if time.monotonic() > deadline:
                    fut.cancel()
                    raise TimeoutError(f"{method}: no answer from the engine's workers within {timeout + 5:g} s")

    def progress_in_server(self, server: Any, wanted: dict[str, tuple[int, int]]) -> dict[str, tuple]:
        """Reads vLLM's output processor (its per-request state, keyed by internal ids under each external one): a
        running request's output tokens so far, as its ``generate`` call would return them (CUMULATIVE output)."""
        proc = server.engine.output_processor
        out: dict[str, tuple] = {}
        for rid, (lo, hi) in wanted.items():
            internal = proc.external_req_ids.get(rid)
            state = proc.request_states.get(internal[0]) if internal else None
            if state is None or state.detokenizer is None:
                continue
            ids = state.detokenizer.output_token_ids
            n = len(ids)
            if n < hi:
                out[rid] = (n, None, None)
                continue
            tokens = [int(t) for t in ids[lo:hi]]
            lps = state.logprobs_processor.logprobs if state.logprobs_processor is not None else None
            logprobs = [float(lps[i][tokens[i - lo]].logprob) for i in range(lo, hi)] if lps else None
            out[rid] = (n, tokens, logprobs)
        return out

    def abort_in_server(self, server: Any, request_ids: list[str]) -> None:
        """``AsyncLLM.abort`` scheduled on the loop where vLLM's client lives (this runs beside it, see
        :meth:`rpc_in_server`); each aborted ``generate`` returns its tokens so far with ``stop_reason`` aborted."""
        engine = server.engine
        handler = getattr(engine, "output_handler", None)
        if engine.errored or handler is None or not request_ids:
            return
        asyncio.run_coroutine_threadsafe(engine.abort(list(request_ids)), handler.get_loop())


VLLM = register_backend(VLLMBackend())
