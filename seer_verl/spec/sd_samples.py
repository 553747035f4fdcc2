"""Draw samples from one vLLM engine with grouped speculative decoding on or off (for the losslessness checks).

The engine runs Seer's worker extension with vLLM's ``suffix`` method when ``sd`` is on, and every request carries
a Seer request tag (``n`` siblings per prompt share a group), so drafts come from the group trees exactly as in a
Seer rollout; vLLM's rejection sampler verifies them. Run as a module (engines spawn processes)::

    python -m seer_verl.spec.sd_samples --model DIR --out samples.json --sd --temperature 1.0 --n 8

The JSON holds, per request, the sampled token ids and the model's log-probability of each sampled token, plus the
drafter's totals (draft tokens proposed and accepted), so a caller can check both that speculation happened and
that the samples are distributed as without it (:mod:`seer_verl.spec.lossless`).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

__all__ = ["sample", "main"]


def sample(model: str, prompts: list[list[int]], n: int, max_tokens: int, temperature: float, sd: bool,
           mode: str = "fixed", gamma: int = 8, kv_gib: float = 0.5, ignore_eos: bool = False) -> dict[str, Any]:
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from seer_verl.spec.request_tag import format_request_id

    kw: dict[str, Any] = dict(model=model, dtype="float32", enforce_eager=True, max_model_len=2048,
                              max_num_seqs=max(8, len(prompts) * n), kv_cache_memory_bytes=int(kv_gib * 2**30),
                              seed=0)
    if sd:
        from seer_verl.spec.config import WORKER_EXTENSION

        kw.update(worker_extension_cls=WORKER_EXTENSION,
                  speculative_config={"method": "suffix", "num_speculative_tokens": gamma,
                                      "suffix_decoding_max_tree_depth": 64})
    llm = LLM(**kw)
    if sd:
        settings: dict[str, Any] = {"mode": mode, "gamma_max": gamma, "fixed_gamma": gamma}
        if mode == "adaptive":
            from seer_verl.spec.config import SpecConfig

            settings["step_time"] = SpecConfig(enabled=True).step_time_model()
        llm.collective_rpc("seer_sd_configure", args=(settings,))
    engine = llm.llm_engine
    sp = SamplingParams(temperature=temperature, max_tokens=max_tokens, logprobs=0, ignore_eos=ignore_eos)
    ids: list[str] = []
    for g, p in enumerate(prompts):
        for s in range(n):
            rid = format_request_id(0, g, s, len(p), s == 0, g * n + s, 0, g * n + s)
            engine.add_request(rid, TokensPrompt(prompt_token_ids=list(p)), sp)
            ids.append(rid)
    outs: dict[str, Any] = {}
    t0 = time.time()
    while engine.has_unfinished_requests():
        for o in engine.step():
            if o.finished:
                outs[o.request_id] = o
    wall = time.time() - t0
    rows = []
    for rid in ids:
        c = outs[rid].outputs[0]
        lps = [float(next(iter(d.values())).logprob) if d else 0.0 for d in (c.logprobs or [])]
        rows.append({"request_id": rid, "token_ids": list(c.token_ids), "logprobs": lps})
    totals: dict[str, Any] = {}
    if sd:
        st = llm.collective_rpc("seer_sd_stats")[0]
        totals = st["totals"]
    return {"rows": rows, "wall_s": wall, "sd": sd, "sd_totals": totals, "temperature": temperature, "n": n}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--prompts", required=True, help="JSON file: list of prompt token-id lists")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--sd", action="store_true")
    ap.add_argument("--mode", default="fixed", choices=["fixed", "adaptive"])
    ap.add_argument("--gamma", type=int, default=8)
    ap.add_argument("--ignore-eos", action="store_true")
    a = ap.parse_args(argv)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    prompts = json.loads(Path(a.prompts).read_text())
    res = sample(a.model, prompts, a.n, a.max_tokens, a.temperature, a.sd, a.mode, a.gamma,
                 ignore_eos=a.ignore_eos)
    Path(a.out).write_text(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
