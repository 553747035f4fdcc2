"""Offline acceptance replay (seer_verl.speculative_tools.acceptance_replay) on synthetic groups: no engine."""

from __future__ import annotations

import json
import random

import pytest

from seer_verl.speculative_tools.acceptance_replay import build_parser, load_groups, replay_response, table


def test_no_drafts_means_one_token_per_step():
    rng = random.Random(0)
    resp = [rng.randrange(10_000) for _ in range(200)]
    r = replay_response([1, 2, 3], resp, [])
    assert r["steps"] == r["tokens"] == 200
    assert r["accepted"] == 0


def test_identical_sibling_gives_full_drafts():
    rng = random.Random(1)
    resp = [rng.randrange(10_000) for _ in range(300)]
    prompt = [7, 8, 9]
    r = replay_response(prompt, resp, [resp], max_spec_tokens=8, max_spec_factor=8.0, min_token_prob=0.1)
    # with the sibling identical, every draft after the first tokens is right (the own prefix halves the
    # probability to 1/2 at most: c/(c+1), still above min_token_prob 0.1)
    assert r["tokens"] / r["steps"] > 7.0
    assert r["accepted"] == r["drafted"]
    assert r["steps"] * 9 >= r["tokens"]


def test_self_repetition_is_drafted_from_own_prefix():
    block = list(range(100, 140))
    resp = block * 5
    r = replay_response([1, 2], resp, [])
    assert r["tokens"] / r["steps"] > 3.0


def test_tree_verify_at_least_linear():
    rng = random.Random(2)
    base = [rng.randrange(50) for _ in range(400)]
    sibs = [[t if rng.random() > 0.2 else rng.randrange(50) for t in base] for _ in range(7)]
    target = [t if rng.random() > 0.2 else rng.randrange(50) for t in base]
    lin = replay_response([0], target, sibs, top_k=4, verify="linear")
    tree = replay_response([0], target, sibs, top_k=4, verify="tree")
    one = replay_response([0], target, sibs, top_k=1)
    assert one["steps"] < one["tokens"]
    assert tree["tokens"] / tree["steps"] >= lin["tokens"] / lin["steps"] - 0.05
    with pytest.raises(ValueError):
        replay_response([0], target, sibs, verify="beam")


def test_table_end_to_end(tmp_path):
    rng = random.Random(3)
    lines = []
    for p in range(3):
        base = [rng.randrange(30) for _ in range(120)]
        for s in range(4):
            resp = [t if rng.random() > 0.15 else rng.randrange(30) for t in base]
            lines.append(json.dumps({"temperature": 0.6, "prompt_index": p, "sample": s, "prompt_ids": [1, 2, p],
                                     "response_ids": resp, "logprobs": [], "finish_reason": "stop"}))
    (tmp_path / "rollouts_T0.6.jsonl").write_text("\n".join(lines) + "\n")
    groups = load_groups(tmp_path / "rollouts_T0.6.jsonl")
    assert [len(g) for g in groups] == [4, 4, 4]
    args = build_parser().parse_args(["table", "--out", str(tmp_path), "--temperatures", "0.6",
                                      "--siblings", "0", "1", "3", "--top-k", "2"])
    assert table(args) == 0
    res = json.loads((tmp_path / "table.json").read_text())
    rows = res["temperatures"]["0.6"]["rows"]
    assert {(r["siblings"], r["column"]) for r in rows} == {
        (n, c) for n in (0, 1, 3) for c in ("linear", "mp2 linear-verify", "mp2 tree-verify")}
    tps = {(r["siblings"], r["column"]): r["tokens_per_step"] for r in rows}
    assert tps[(3, "linear")] > tps[(0, "linear")]
    assert all(0 <= b <= 1 for r in rows for b in r["beta"])
    assert (tmp_path / "table.png").is_file()


def test_lossless_subcommand_aa_split(tmp_path):
    rng = random.Random(4)
    lines = []
    for p in range(4):
        for s in range(16):
            resp = [rng.randrange(6) for _ in range(rng.randrange(5, 40))]
            lines.append(json.dumps({"prompt_index": p, "sample": s, "response_ids": resp,
                                     "logprobs": [-rng.random() for _ in resp]}))
    f = tmp_path / "r.jsonl"
    f.write_text("\n".join(lines) + "\n")
    from seer_verl.speculative_tools.acceptance_replay import main

    assert main(["lossless", str(f), "--json", str(tmp_path / "l.json")]) == 0
    res = json.loads((tmp_path / "l.json").read_text())
    assert res["passed"] and res["n_on"] == res["n_off"] == 32
