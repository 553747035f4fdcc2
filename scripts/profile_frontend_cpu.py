"""What vLLM's front end spends per generated token on output handling (docs/bench.md, CPU accounting).

One in-process AsyncLLM (SmolLM2-135M fp32) generates N requests of T tokens at once, REPS times, with the output
kind verl uses (CUMULATIVE: a RequestOutput per request per step), with FINAL_ONLY (one output per request), and
with FINAL_ONLY and no detokenization. Prints, per variant and repeat, wall time, the front end's (this process's)
and the engine core's CPU seconds and the front end's CPU ms per token; the last line is all of it as JSON.

    .venv/bin/python scripts/profile_frontend_cpu.py 8 256 2      # N T REPS, ~4 min on this host
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time


def _cpu(p) -> float:
    t = p.cpu_times()
    return t.user + t.system


async def run(n: int, max_tokens: int, reps: int) -> dict[str, list[dict[str, float]]]:
    import psutil
    from vllm import SamplingParams
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.inputs import TokensPrompt
    from vllm.sampling_params import RequestOutputKind
    from vllm.v1.engine.async_llm import AsyncLLM

    from seer_verl.bench.run import resolve_model

    eng = AsyncLLM.from_engine_args(AsyncEngineArgs(model=resolve_model("smollm2"), dtype="float32",
                                                    max_model_len=1024, max_num_seqs=16, enforce_eager=True,
                                                    disable_log_stats=True))
    me = psutil.Process()
    prompt = TokensPrompt(prompt_token_ids=list(range(100, 140)))

    async def one(i: int, kind: RequestOutputKind, detok: bool, tag: str) -> tuple[int, int]:
        sp = SamplingParams(max_tokens=max_tokens, temperature=1.0, ignore_eos=True, output_kind=kind,
                            detokenize=detok)
        outputs, out = 0, None
        async for out in eng.generate(prompt, sp, request_id=f"{tag}-{i}"):
            outputs += 1
        return outputs, len(out.outputs[0].token_ids)

    variants = [("cumulative", RequestOutputKind.CUMULATIVE, True),
                ("final_only", RequestOutputKind.FINAL_ONLY, True),
                ("final_only_no_detokenize", RequestOutputKind.FINAL_ONLY, False)]
    await asyncio.gather(*[one(i, RequestOutputKind.FINAL_ONLY, True, "warm") for i in range(n)])
    res: dict[str, list[dict[str, float]]] = {}
    try:
        for r in range(reps):
            for name, kind, detok in variants:
                kids = me.children(recursive=True)
                c0, k0, t0 = _cpu(me), sum(_cpu(k) for k in kids), time.time()
                outs = await asyncio.gather(*[one(i, kind, detok, f"{name}{r}") for i in range(n)])
                c1, k1, t1 = _cpu(me), sum(_cpu(k) for k in kids), time.time()
                toks = sum(o[1] for o in outs)
                row = {"wall_s": t1 - t0, "front_end_cpu_s": c1 - c0, "engine_core_cpu_s": k1 - k0, "tokens": toks,
                       "outputs": sum(o[0] for o in outs), "front_end_ms_per_token": 1000 * (c1 - c0) / toks}
                res.setdefault(name, []).append(row)
                print(name, r, {k: round(v, 3) for k, v in row.items()}, flush=True)
    finally:
        eng.shutdown()
    return res


def main(argv: list[str]) -> int:
    if len(argv) != 3 or not all(a.isdigit() and int(a) > 0 for a in argv):
        print(__doc__)
        return 2
    from seer_verl.paths import cpu_env

    os.environ.update({k: v for k, v in cpu_env().items() if k not in os.environ})
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    print(json.dumps(asyncio.run(run(*(int(a) for a in argv)))))
    return 0


if __name__ == "__main__":  # vLLM starts its engine core by spawn: the guard is required
    raise SystemExit(main(sys.argv[1:]))
