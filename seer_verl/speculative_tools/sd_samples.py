"""Draw samples from one vLLM engine with grouped speculative decoding on or off (for the losslessness checks).

The engine runs Seer's worker extension with vLLM's ``suffix`` method when ``sd`` is on, and every request carries
a Seer request tag (``n`` siblings per prompt share a group), so drafts come from the group trees exactly as in a
Seer rollout; vLLM's rejection sampler verifies them. Run as a module (engines spawn processes)::

    python -m seer_verl.speculative_tools.sd_samples --model DIR --out samples.json --sd --temperature 1.0 --n 8

The JSON holds, per request, the sampled token ids and the model's log-probability of each sampled token, plus the
drafter's totals (draft tokens proposed and accepted), so a caller can check both that speculation happened and
that the samples are distributed as without it (:mod:`seer_verl.speculative_tools.lossless`).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

__all__ = ["sample", "sample_many", "main"]


#: what one draw may set (the engine, the prompts, ``n`` and ``max_tokens`` are the process's; ``num_prompts``: only
#: the first ones)
DRAW_KEYS = ("temperature", "replay_seed", "split_at", "reverse", "num_prompts")


def sample(model: str, prompts: list[list[int]], n: int, max_tokens: int, temperature: float, sd: bool,
           mode: str = "fixed", gamma: int = 8, kv_gib: float = 0.5, ignore_eos: bool = False,
           replay_seed: int | None = None, split_at: int | None = None, reverse: bool = False) -> dict[str, Any]:
    """``replay_seed``: replayable sampling (:mod:`seer_verl.replay`), sample ``(g, s)`` keyed by ``(seed, 0, g, s)``.
    ``split_at``: generate the first ``split_at`` tokens, then resume each unfinished sample as a new request whose
    prompt is prompt + those tokens (as Seer's divided rollout does). ``reverse``: submit the requests in reverse
    order (another batch composition)."""
    draw = dict(temperature=temperature, replay_seed=replay_seed, split_at=split_at, reverse=reverse)
    return sample_many(model, prompts, n, max_tokens, sd, {"draw": draw}, mode, gamma, kv_gib, ignore_eos)["draw"]


def sample_many(model: str, prompts: list[list[int]], n: int, max_tokens: int, sd: bool,
                draws: dict[str, dict[str, Any]], mode: str = "fixed", gamma: int = 8, kv_gib: float = 0.5,
                ignore_eos: bool = False) -> dict[str, dict[str, Any]]:
    """Several draws (name -> settings of :data:`DRAW_KEYS`, as :func:`sample` takes them) from one engine, each as
    if from a freshly started one: the prefix cache is emptied and the grouped drafter reset (no trees, no
    statistics) before each. One engine start instead of one per draw."""
    for name, d in draws.items():
        bad = set(d) - set(DRAW_KEYS)
        if bad:
            raise ValueError(f"draw {name!r}: unknown keys {sorted(bad)}; allowed: {list(DRAW_KEYS)}")
    from vllm import LLM

    kw: dict[str, Any] = dict(model=model, dtype="float32", enforce_eager=True, max_model_len=2048,
                              max_num_seqs=max(8, len(prompts) * n), kv_cache_memory_bytes=int(kv_gib * 2**30),
                              seed=0)
    if sd:
        from seer_verl.speculative.config import WORKER_EXTENSION

        kw.update(worker_extension_cls=WORKER_EXTENSION,
                  speculative_config={"method": "suffix", "num_speculative_tokens": gamma,
                                      "suffix_decoding_max_tree_depth": 64})
    llm = LLM(**kw)
    if sd:  # the same drafter settings for every draw, applied after each reset
        from seer_verl.speculative.config import SpecConfig
        from seer_verl.speculative.settings import DrafterSettings

        settings = DrafterSettings(mode=mode, gamma_max=gamma, fixed_gamma=gamma,
                                   step_time=SpecConfig(enabled=True).step_time_model() if mode == "adaptive" else None)
    out = {}
    for name, d in draws.items():
        llm.reset_prefix_cache()
        if sd:
            llm.collective_rpc("seer_sd_reset")
            llm.collective_rpc("seer_sd_configure", args=(settings.as_dict(),))
        out[name] = _draw(llm, prompts[:d.get("num_prompts") or len(prompts)], n, max_tokens, sd, ignore_eos,
                          temperature=float(d.get("temperature", 1.0)), replay_seed=d.get("replay_seed"),
                          split_at=d.get("split_at"), reverse=bool(d.get("reverse", False)))
    return out


def _draw(llm: Any, prompts: list[list[int]], n: int, max_tokens: int, sd: bool, ignore_eos: bool,
          temperature: float, replay_seed: int | None, split_at: int | None, reverse: bool) -> dict[str, Any]:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from seer_verl.replay.keys import EXTRA_ARG, sample_key
    from seer_verl.speculative.request_tag import format_request_id

    engine = llm.llm_engine
    reqs = [(g, s_, p) for g, p in enumerate(prompts) for s_ in range(n)]
    if reverse:
        reqs.reverse()

    def params(g: int, s_: int, max_new: int) -> Any:
        extra = None if replay_seed is None else {EXTRA_ARG: sample_key(replay_seed, 0, g, s_)}
        return SamplingParams(temperature=temperature, max_tokens=max_new, logprobs=0, ignore_eos=ignore_eos,
                              extra_args=extra)

    def run(batch: list[tuple[int, int, list[int], int]], part: int) -> dict[tuple[int, int], Any]:
        ids = {}
        for g, s_, p, max_new in batch:
            rid = format_request_id(0, g, s_, len(prompts[g]), s_ == 0, g * n + s_, part, g * n + s_)
            engine.add_request(rid, TokensPrompt(prompt_token_ids=list(p)), params(g, s_, max_new))
            ids[rid] = (g, s_)
        outs: dict[tuple[int, int], Any] = {}
        while engine.has_unfinished_requests():
            for o in engine.step():
                if o.finished:
                    outs[ids[o.request_id]] = o.outputs[0]
        return outs

    t0 = time.time()
    first = run([(g, s_, p, split_at or max_tokens) for g, s_, p in reqs], 0)
    got = {k: (list(c.token_ids), _logprobs(c), c.finish_reason) for k, c in first.items()}
    if split_at:
        rest = [(g, s_, list(p) + got[(g, s_)][0], max_tokens - split_at) for g, s_, p in reqs
                if got[(g, s_)][2] == "length" and max_tokens > split_at]
        for k, c in run(rest, 1).items():
            got[k] = (got[k][0] + list(c.token_ids), got[k][1] + _logprobs(c), c.finish_reason)
    wall = time.time() - t0
    rows = []
    for g, p in enumerate(prompts):
        for s_ in range(n):
            rows.append({"request_id": format_request_id(0, g, s_, len(p), s_ == 0, g * n + s_, 0, g * n + s_),
                         "token_ids": got[(g, s_)][0], "logprobs": got[(g, s_)][1]})
    totals: dict[str, Any] = {}
    if sd:
        st = llm.collective_rpc("seer_sd_stats")[0]
        totals = st["totals"]
    return {"rows": rows, "wall_s": wall, "sd": sd, "sd_totals": totals, "temperature": temperature, "n": n}


def _logprobs(c: Any) -> list[float]:
    return [float(next(iter(d.values())).logprob) if d else 0.0 for d in (c.logprobs or [])]


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
    ap.add_argument("--replay-seed", type=int, default=None)
    ap.add_argument("--split-at", type=int, default=None)
    ap.add_argument("--reverse", action="store_true")
    ap.add_argument("--draws", default=None,
                    help="JSON: {name: {temperature, replay_seed, split_at, reverse}} drawn from one engine; --out "
                         "then holds {name: result} (the single-draw flags above are ignored)")
    ap.add_argument("--accept-bias", type=float, default=0.0,
                    help="tests only: a verifier biased to accept mismatching draft tokens (replay only)")
    a = ap.parse_args(argv)
    if a.accept_bias:
        os.environ["SEER_REPLAY_TEST_ACCEPT_BIAS"] = str(a.accept_bias)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    prompts = json.loads(Path(a.prompts).read_text())
    if a.draws:
        res = sample_many(a.model, prompts, a.n, a.max_tokens, a.sd, json.loads(a.draws), a.mode, a.gamma,
                          ignore_eos=a.ignore_eos)
    else:
        res = sample(a.model, prompts, a.n, a.max_tokens, a.temperature, a.sd, a.mode, a.gamma,
                     ignore_eos=a.ignore_eos, replay_seed=a.replay_seed, split_at=a.split_at, reverse=a.reverse)
    Path(a.out).write_text(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
