"""`seer-verl lossless`: are samples drawn with grouped speculative decoding distributed as samples without it?

    seer-verl lossless                 # quick: SmolLM2, T=1.0, 4 prompts x 16 samples x 48 tokens (~3 min)
    seer-verl lossless --full          # 8 prompts x 48 samples x 96 tokens
    seer-verl lossless --model tiny --temperature 0   # greedy: samples must be identical token for token
    seer-verl lossless --replay [--temperature 0.6]   # replayable sampling: SD on must be token-identical to off

Draws the same prompts' samples three times (:mod:`seer_verl.speculative_tools.sd_samples`; the SD-off draws from
one engine, the SD-on draw from another, each draw from an emptied prefix cache): SD off, SD on (Seer's grouped
drafter, fixed draft length, so verification is exercised on every step), and, as a power check, SD off at a
slightly different temperature. Then :func:`seer_verl.speculative_tools.lossless.two_sample_test`
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

__all__ = ["main", "run_check", "run_identity_check", "run_quick_checks"]


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


def _draw_set(model_dir: str, prompts_file: Path, out: Path, n: int, max_tokens: int, sd: bool,
              draws: dict[str, dict[str, Any]], timeout_s: float, accept_bias: float = 0.0) -> dict[str, Any]:
    """Several draws from one fresh engine (one process, one engine start): ``{name: samples}``."""
    cmd = [sys.executable, "-m", "seer_verl.speculative_tools.sd_samples", "--model", model_dir, "--prompts",
           str(prompts_file), "--out", str(out), "--n", str(n), "--max-tokens", str(max_tokens),
           "--draws", json.dumps(draws)]
    if sd:
        cmd.append("--sd")
    if accept_bias:
        cmd += ["--accept-bias", str(accept_bias)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if r.returncode != 0:
        raise RuntimeError(f"sampling failed (sd={sd}, draws {sorted(draws)}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
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
    model_dir, work, pf = _setup(model, num_prompts, seed, out_dir)
    off_draws = {"off": {"temperature": temperature}}
    if temperature > 0:
        off_draws["power"] = {"temperature": power_temperature}
    off = _draw_set(model_dir, pf, work / "off.json", n, max_tokens, False, off_draws, timeout_s)
    on = _draw_set(model_dir, pf, work / "on.json", n, max_tokens, True, {"on": {"temperature": temperature}},
                   timeout_s)
    report = _statistical_report(model, num_prompts, n, max_tokens, temperature, alpha, off["off"], on["on"],
                                 off.get("power"), power_temperature)
    (work / "lossless.json").write_text(json.dumps(report, indent=1))
    report["out"] = str(work / "lossless.json")
    return report


def _statistical_report(model: str, num_prompts: int, n: int, max_tokens: int, temperature: float, alpha: float,
                        off: dict[str, Any], on: dict[str, Any], power: dict[str, Any] | None,
                        power_temperature: float) -> dict[str, Any]:
    """Greedy: identical samples. T > 0: the two-sample test of on vs off (must pass) and of the power draw vs off
    (must reject)."""
    from seer_verl.speculative_tools.lossless import two_sample_test

    report: dict[str, Any] = {"model": model, "temperature": temperature, "prompts": num_prompts, "n": n,
                              "max_tokens": max_tokens, "sd_totals": on["sd_totals"],
                              "wall_s": {"off": off["wall_s"], "on": on["wall_s"]}}
    if temperature == 0:
        same = [a["token_ids"] == b["token_ids"] for a, b in zip(off["rows"], on["rows"])]
        report.update({"identical": sum(same), "samples": len(same), "passed": all(same)})
        return report
    t_off, lp_off = _by_prompt(off)
    t_on, lp_on = _by_prompt(on)
    report["on_vs_off"] = two_sample_test(t_on, t_off, on_logprobs=lp_on, off_logprobs=lp_off, alpha=alpha)
    t_pw, lp_pw = _by_prompt(power)
    report["power_check"] = {"temperature": power_temperature,
                             **two_sample_test(t_pw, t_off, on_logprobs=lp_pw, off_logprobs=lp_off, alpha=alpha)}
    for k in ("on_vs_off", "power_check"):  # keep the JSON small
        report[k]["token_chi2"].pop("per_position", None)
    report["passed"] = bool(report["on_vs_off"]["passed"])
    report["power_rejects"] = not report["power_check"]["passed"]
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
    p >= alpha; the power check must reject (p < alpha). ``split_check=False`` skips the split/reversed draw (the
    trainer tests check chunked Seer against stock token for token). ``stat_power``: also run the two-sample
    statistical test of free sampling on the biased samples against independent SD-off samples (another replay
    seed). The SD-off draws share one engine, SD on another, the biased verifier a third."""
    model_dir, work, pf = _setup(model, num_prompts, seed, out_dir)
    key = {"temperature": temperature, "replay_seed": replay_seed}
    off_draws = {"off": key}
    if split_check:
        off_draws["split_reversed"] = {**key, "split_at": max(1, max_tokens // 3), "reverse": True}
    if stat_power:
        off_draws["off_other_seed"] = {**key, "replay_seed": replay_seed + 1}
    res = _draw_set(model_dir, pf, work / "replay_off.json", n, max_tokens, False, off_draws, timeout_s)
    res |= _draw_set(model_dir, pf, work / "replay_on.json", n, max_tokens, True, {"on": key}, timeout_s)
    res |= _draw_set(model_dir, pf, work / "replay_biased.json", n, max_tokens, True, {"biased_verifier": key},
                     timeout_s, accept_bias=accept_bias)
    report = _identity_report(model, num_prompts, n, max_tokens, temperature, replay_seed, accept_bias, flip_rate,
                              alpha, res)
    (work / "lossless_replay.json").write_text(json.dumps(report, indent=1))
    report["out"] = str(work / "lossless_replay.json")
    return report


def _identity_report(model: str, num_prompts: int, n: int, max_tokens: int, temperature: float, replay_seed: int,
                     accept_bias: float, flip_rate: float, alpha: float, res: dict[str, Any]) -> dict[str, Any]:
    """Each replayed draw of ``res`` (``on``, ``biased_verifier``, and ``split_reversed`` when drawn) against the
    replayed SD-off draw ``off``; with ``off_other_seed``, the statistical test of the biased draw against it."""
    from seer_verl.replay.identity import compare
    from seer_verl.speculative_tools.lossless import two_sample_test

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
    if "off_other_seed" in res:
        t_b, lp_b = _by_prompt(res["biased_verifier"])
        t_o, lp_o = _by_prompt(res["off_other_seed"])
        st = two_sample_test(t_b, t_o, on_logprobs=lp_b, off_logprobs=lp_o, alpha=alpha)
        st["token_chi2"].pop("per_position", None)
        report["statistical_test_on_biased"] = st
    return report


def run_quick_checks(model: str = "smollm2", num_prompts: int = 4, n: int = 16, max_tokens: int = 48,
                     temperature: float = 1.0, power_temperature: float = 0.8, replay_seed: int = 0,
                     accept_bias: float = 0.1, flip_rate: float = 0.05, alpha: float = 0.01, seed: int = 0,
                     identity_prompts: int = 2, out_dir: str | Path | None = None,
                     timeout_s: float = 900) -> dict[str, dict[str, Any]]:
    """:func:`run_check` (free sampling, statistical; ``num_prompts``) and :func:`run_identity_check` (replayed, the
    first ``identity_prompts``, without the split/reversed draw) from three engine starts instead of five: SD off
    draws free, at the power temperature and replayed; SD on draws free and replayed; the biased verifier draws
    replayed. Returns ``{"statistical": ..., "identity": ...}`` (CI's quick size of both)."""
    model_dir, work, pf = _setup(model, num_prompts, seed, out_dir)
    free = {"temperature": temperature}
    key = {"temperature": temperature, "replay_seed": replay_seed, "num_prompts": min(identity_prompts, num_prompts)}
    off = _draw_set(model_dir, pf, work / "off.json", n, max_tokens, False,
                    {"off": free, "power": {"temperature": power_temperature}, "off_replay": key}, timeout_s)
    on = _draw_set(model_dir, pf, work / "on.json", n, max_tokens, True, {"on": free, "on_replay": key}, timeout_s)
    biased = _draw_set(model_dir, pf, work / "biased.json", n, max_tokens, True, {"biased_verifier": key},
                       timeout_s, accept_bias=accept_bias)
    out = {
        "statistical": _statistical_report(model, num_prompts, n, max_tokens, temperature, alpha, off["off"],
                                           on["on"], off["power"], power_temperature),
        "identity": _identity_report(model, key["num_prompts"], n, max_tokens, temperature, replay_seed, accept_bias,
                                     flip_rate, alpha, {"off": off["off_replay"], "on": on["on_replay"], **biased}),
    }
    (work / "lossless_quick.json").write_text(json.dumps(out, indent=1))
    return out


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
