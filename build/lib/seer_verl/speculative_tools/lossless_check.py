"""`seer-verl lossless`: are samples drawn with grouped speculative decoding distributed as samples without it?

    seer-verl lossless                 # quick: SmolLM2, T=1.0, 4 prompts x 16 samples x 48 tokens (~3 min)
    seer-verl lossless --full          # 8 prompts x 48 samples x 96 tokens
    seer-verl lossless --model tiny --temperature 0   # greedy: samples must be identical token for token
    seer-verl lossless --replay [--temperature 0.6]   # replayable sampling: SD on must be token-identical to off

Draws the same prompts' samples three times on a fresh vLLM-cpu engine each (:mod:`seer_verl.speculative_tools.sd_samples`):
SD off, SD on (Seer's grouped drafter, fixed draft length, so verification is exercised on every step), and, as a
power check, SD off at a slightly different temperature. Then :func:`seer_verl.speculative_tools.lossless.two_sample_test`
(per-position token chi-square, Mann-Whitney and KS on mean log-prob and on length; Bonferroni) compares on vs off
(must pass: p >= alpha) and the power check vs off (should fail: a test that cannot tell T=1.0 from T=0.8 proves
nothing). Writes ``<out>/lossless.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["main", "run_check"]


def _prompts(model_dir: str, num_prompts: int, seed: int) -> list[list[int]]:
    from transformers import AutoTokenizer

    from seer_verl.bench.workload import load_prompts
    from seer_verl.prepare.model import default_cache_dir

    tok = AutoTokenizer.from_pretrained(model_dir)
    rows = load_prompts(default_cache_dir() / "data" / "arith" / "train.parquet", num_prompts, seed)
    out = []
    for r in rows:
        text = tok.apply_chat_template(list(r["prompt"]), add_generation_prompt=True, tokenize=False)
        out.append(tok(text, add_special_tokens=False)["input_ids"])
    return out


def _draw(model_dir: str, prompts_file: Path, out: Path, n: int, max_tokens: int, temperature: float, sd: bool,
          timeout_s: float, extra: list[str] | None = None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "seer_verl.speculative_tools.sd_samples", "--model", model_dir, "--prompts", str(prompts_file),
           "--out", str(out), "--n", str(n), "--max-tokens", str(max_tokens), "--temperature", str(temperature),
           *(extra or [])]
    if sd:
        cmd.append("--sd")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if r.returncode != 0:
        raise RuntimeError(f"sampling failed (sd={sd}, T={temperature}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    return json.loads(out.read_text())


def _by_prompt(res: dict[str, Any]) -> tuple[dict[int, list[list[int]]], dict[int, list[float]]]:
    from seer_verl.speculative.request_tag import parse

    toks: dict[int, list[list[int]]] = {}
    lps: dict[int, list[float]] = {}
    for row in res["rows"]:
        g = parse(row["request_id"]).group
        toks.setdefault(g, []).append(row["token_ids"])
        lp = row["logprobs"]
        lps.setdefault(g, []).append(sum(lp) / len(lp) if lp else 0.0)
    return toks, lps


def run_check(model: str = "smollm2", num_prompts: int = 4, n: int = 16, max_tokens: int = 48,
              temperature: float = 1.0, power_temperature: float = 0.8, alpha: float = 0.01, seed: int = 0,
              out_dir: str | Path | None = None, timeout_s: float = 900) -> dict[str, Any]:
    from seer_verl.speculative_tools.lossless import two_sample_test

    model_dir, work, pf = _setup(model, num_prompts, seed, out_dir)
    off = _draw(model_dir, pf, work / "off.json", n, max_tokens, temperature, False, timeout_s)
    on = _draw(model_dir, pf, work / "on.json", n, max_tokens, temperature, True, timeout_s)
    report: dict[str, Any] = {"model": model, "temperature": temperature, "prompts": num_prompts, "n": n,
                              "max_tokens": max_tokens, "sd_totals": on["sd_totals"],
                              "wall_s": {"off": off["wall_s"], "on": on["wall_s"]}}
    if temperature == 0:
        same = [a["token_ids"] == b["token_ids"] for a, b in zip(off["rows"], on["rows"])]
        report.update({"identical": sum(same), "samples": len(same), "passed": all(same)})
    else:
        t_off, lp_off = _by_prompt(off)
        t_on, lp_on = _by_prompt(on)
        report["on_vs_off"] = two_sample_test(t_on, t_off, on_logprobs=lp_on, off_logprobs=lp_off, alpha=alpha)
        power = _draw(model_dir, pf, work / "power.json", n, max_tokens, power_temperature, False, timeout_s)
        t_pw, lp_pw = _by_prompt(power)
        report["power_check"] = {"temperature": power_temperature,
                                 **two_sample_test(t_pw, t_off, on_logprobs=lp_pw, off_logprobs=lp_off, alpha=alpha)}
        for k in ("on_vs_off", "power_check"):  # keep the JSON small
            report[k]["token_chi2"].pop("per_position", None)
        report["passed"] = bool(report["on_vs_off"]["passed"])
        report["power_rejects"] = not report["power_check"]["passed"]
    (work / "lossless.json").write_text(json.dumps(report, indent=1))
    report["out"] = str(work / "lossless.json")
    return report


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    return min(1.0, sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(max(0, k), n + 1)))


def _setup(model: str, num_prompts: int, seed: int, out_dir: str | Path | None) -> tuple[str, Path, Path]:
    from seer_verl.bench.run import resolve_model
    from seer_verl.paths import cpu_env

    env = cpu_env()
    os.environ.update({k: v for k, v in env.items() if k not in os.environ})
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0")
    model_dir = resolve_model(model)
    work = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="seer_lossless_"))
    work.mkdir(parents=True, exist_ok=True)
    pf = work / "prompts.json"
    pf.write_text(json.dumps(_prompts(model_dir, num_prompts, seed)))
    return model_dir, work, pf


def run_identity_check(model: str = "smollm2", num_prompts: int = 4, n: int = 16, max_tokens: int = 48,
                       temperature: float = 1.0, replay_seed: int = 0, accept_bias: float = 0.1,
                       flip_rate: float = 0.05, alpha: float = 0.01, stat_power: bool = False, split_check: bool = True,
                       seed: int = 0, out_dir: str | Path | None = None, timeout_s: float = 900) -> dict[str, Any]:
    """Lossless by identity, with replayable sampling (:mod:`seer_verl.replay`): the same prompts' samples drawn
    SD off; SD off with every sample split into two requests (a chunk boundary at ``max_tokens // 3``) and the
    batch reversed; SD on (grouped drafter, fixed draft length); and SD on with a verifier biased to accept a
    mismatching draft token with probability ``accept_bias`` (the power check). Each is compared token for token
    with SD off. fp32 numerics may flip a near-tie, so H0 is "at most ``flip_rate`` of the samples diverge";
    p = P(Binomial(samples, flip_rate) >= divergent samples). Passes when SD on and the split/reversed draw keep
    p >= alpha; the power check must reject (p < alpha). ``split_check=False`` skips the split/reversed draw (one
    engine start less; the trainer tests check chunked Seer against stock token for token). ``stat_power``: also run the two-sample statistical test
    of free sampling on the biased samples against independent SD-off samples (another replay seed)."""
    from seer_verl.replay.identity import compare
    from seer_verl.speculative_tools.lossless import two_sample_test

    model_dir, work, pf = _setup(model, num_prompts, seed, out_dir)
    key = ["--replay-seed", str(replay_seed)]
    draws = {
        "off": (False, key),
        "split_reversed": (False, [*key, "--split-at", str(max(1, max_tokens // 3)), "--reverse"]),
        "on": (True, key),
        "biased_verifier": (True, [*key, "--accept-bias", str(accept_bias)]),
    }
    if not split_check:
        del draws["split_reversed"]
    if stat_power:
        draws["off_other_seed"] = (False, ["--replay-seed", str(replay_seed + 1)])
    res = {name: _draw(model_dir, pf, work / f"replay_{name}.json", n, max_tokens, temperature, sd, timeout_s, extra)
           for name, (sd, extra) in draws.items()}
    ref = [r["token_ids"] for r in res["off"]["rows"]]
    report: dict[str, Any] = {"model": model, "temperature": temperature, "prompts": num_prompts, "n": n,
                              "max_tokens": max_tokens, "replay_seed": replay_seed, "flip_rate": flip_rate,
                              "alpha": alpha, "accept_bias": accept_bias, "sd_totals": res["on"]["sd_totals"],
                              "sd_totals_biased": res["biased_verifier"]["sd_totals"]}
    for name in [d for d in ("split_reversed", "on", "biased_verifier") if d in res]:
        ident = compare(ref, [r["token_ids"] for r in res[name]["rows"]])
        ident["p"] = binomial_sf(ident["requests"] - ident["identical"], ident["requests"], flip_rate)
        report[name] = ident
    report["passed"] = report["on"]["p"] >= alpha and report.get("split_reversed", {"p": 1.0})["p"] >= alpha
    report["power_rejects"] = report["biased_verifier"]["p"] < alpha
    if stat_power:
        t_b, lp_b = _by_prompt(res["biased_verifier"])
        t_o, lp_o = _by_prompt(res["off_other_seed"])
        st = two_sample_test(t_b, t_o, on_logprobs=lp_b, off_logprobs=lp_o, alpha=alpha)
        st["token_chi2"].pop("per_position", None)
        report["statistical_test_on_biased"] = st
    (work / "lossless_replay.json").write_text(json.dumps(report, indent=1))
    report["out"] = str(work / "lossless_replay.json")
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="seer-verl lossless", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2", help="smollm2 | tiny | an HF model folder")
    ap.add_argument("--full", action="store_true", help="8 prompts x 48 samples x 96 tokens")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--out", default="runs/lossless")
    ap.add_argument("--replay", action="store_true",
                    help="lossless by identity with replayable sampling (+ the biased-verifier power check)")
    a = ap.parse_args(argv)
    size = dict(num_prompts=8, n=48, max_tokens=96) if a.full else dict(num_prompts=4, n=16, max_tokens=48)
    if a.replay:
        rep = run_identity_check(a.model, temperature=a.temperature, alpha=a.alpha, out_dir=a.out,
                                 stat_power=True, **size)
        for name in ("split_reversed", "on", "biased_verifier"):
            r = rep[name]
            print(f"{name:>16} vs SD off: {r['identical']}/{r['requests']} samples identical, tokens {r['tokens']} "
                  f"vs {r['tokens_reference']}, p={r['p']:.3g}")
        st = rep["statistical_test_on_biased"]
        print(f"statistical two-sample test, biased verifier vs independent SD-off samples: overall p="
              f"{st['overall_p']:.3g} ({'rejects' if not st['passed'] else 'does NOT reject'})")
        print(f"drafts accepted {rep['sd_totals'].get('accepted_tokens')} of {rep['sd_totals'].get('draft_tokens')}; "
              f"{'PASS' if rep['passed'] else 'FAIL'}, power check {'rejects' if rep['power_rejects'] else 'FAILS'}")
        print(f"report: {rep['out']}")
        return 0 if rep["passed"] and rep["power_rejects"] else 1
    rep = run_check(a.model, temperature=a.temperature, alpha=a.alpha, out_dir=a.out, **size)
    if a.temperature == 0:
        print(f"greedy: {rep['identical']}/{rep['samples']} samples identical with and without SD; "
              f"drafts accepted {rep['sd_totals'].get('accepted_tokens')} of {rep['sd_totals'].get('draft_tokens')}")
    else:
        ov, pw = rep["on_vs_off"], rep["power_check"]
        print(f"SD on vs off (T={a.temperature}): overall p={ov['overall_p']:.3g} "
              f"(tokens chi2 p={ov['token_chi2']['p']:.3g}, logprob MW p={ov['logprob_mw']['p']:.3g}, "
              f"length MW p={ov['length_mw']['p']:.3g}) -> {'PASS' if rep['passed'] else 'FAIL'} at alpha={a.alpha}; "
              f"mean logprob on {ov['mean_logprob_on']:.4f} off {ov['mean_logprob_off']:.4f}")
        print(f"power check (T={pw['temperature']} vs T={a.temperature}, SD off): overall p={pw['overall_p']:.3g} -> "
              f"{'rejected (the test can see a real difference)' if rep['power_rejects'] else 'NOT rejected'}")
        print(f"drafts accepted {rep['sd_totals'].get('accepted_tokens')} of {rep['sd_totals'].get('draft_tokens')}")
    print(f"report: {rep['out']}")
    return 0 if rep["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
