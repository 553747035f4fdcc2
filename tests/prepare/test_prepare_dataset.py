"""The seer_arith data set: determinism, verl's parquet schema, correct answers."""

from __future__ import annotations

import json
import random
import re

import pytest

pd = pytest.importorskip("pandas")

from seer_verl.prepare.arith_dataset import (  # noqa: E402
    DATA_SOURCE,
    INSTRUCTION,
    MAX_STEPS,
    MIN_STEPS,
    generate_problem,
    generate_problems,
    write_dataset,
)
from seer_verl.prepare.reward import compute_score  # noqa: E402

COLUMNS = ["data_source", "prompt", "ability", "reward_model", "extra_info"]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("arith")
    train, val = write_dataset(out, num_train=200, num_val=40, seed=3)
    return out, train, val


def _recompute(start, ops):
    """Independent evaluation of the structured operations."""
    value = start
    for kind, args in ops:
        value = {
            "add": lambda v: v + args[0],
            "sub": lambda v: v - args[0],
            "add_groups": lambda v: v + args[0] * args[1],
            "sub_groups": lambda v: v - args[0] * args[1],
            "mul": lambda v: v * args[0],
        }[kind](value)
    return value


def test_paths_and_row_counts(written):
    out, train, val = written
    assert train == out / "train.parquet" and val == out / "val.parquet"
    assert len(pd.read_parquet(train)) == 200
    assert len(pd.read_parquet(val)) == 40


def test_schema_matches_verl(written):
    _, train, val = written
    for path, split in ((train, "train"), (val, "test")):
        df = pd.read_parquet(path)
        assert list(df.columns) == COLUMNS
        for i, row in enumerate(df.itertuples(index=False)):
            assert row.data_source == DATA_SOURCE
            assert row.ability == "math"
            prompt = list(row.prompt)
            assert len(prompt) == 1 and prompt[0]["role"] == "user"
            assert prompt[0]["content"].endswith(INSTRUCTION)
            assert "####" in prompt[0]["content"]
            rm = dict(row.reward_model)
            assert rm["style"] == "rule" and isinstance(rm["ground_truth"], str)
            assert re.fullmatch(r"-?\d+", rm["ground_truth"])
            ei = dict(row.extra_info)
            assert ei["index"] == i and ei["split"] == split
            assert MIN_STEPS <= ei["steps"] <= MAX_STEPS


def test_deterministic_for_seed(tmp_path, written):
    _, train, val = written
    train2, val2 = write_dataset(tmp_path / "again", num_train=200, num_val=40, seed=3)
    pd.testing.assert_frame_equal(pd.read_parquet(train), pd.read_parquet(train2))
    pd.testing.assert_frame_equal(pd.read_parquet(val), pd.read_parquet(val2))
    train3, _ = write_dataset(tmp_path / "other", num_train=200, num_val=40, seed=4)
    assert not pd.read_parquet(train).equals(pd.read_parquet(train3))


def test_generation_independent_of_global_random_state():
    random.seed(123)
    a = generate_problems(20, seed=9)
    random.seed(456)
    b = generate_problems(20, seed=9)
    assert a == b


def test_answers_correct_by_recomputing(written):
    _, train, val = written
    for path, split, n, exclude in ((train, "train", 200, set()), (val, "test", 40, None)):
        df = pd.read_parquet(path)
        if exclude is None:  # val excludes train questions, like write_dataset does
            exclude = {p.question for p in generate_problems(200, seed=3, split="train")}
        problems = generate_problems(n, seed=3, split=split, exclude=exclude)
        for p, row in zip(problems, df.itertuples(index=False)):
            assert row.prompt[0]["content"] == f"{p.question} {INSTRUCTION}"
            truth = _recompute(p.start, p.ops)
            assert truth == p.answer >= 1
            assert row.reward_model["ground_truth"] == str(truth)
            assert row.extra_info["steps"] == len(p.ops)
            # every operand is stated in the question, and the start value too
            numbers = [int(x) for x in re.findall(r"\d+", p.question)]
            assert numbers[0] == p.start or p.start in numbers
            for kind, args in p.ops:
                for a in args if kind != "mul" else ():
                    assert a in numbers, (a, p.question)
            # the reward scores a correct final line 1 and a wrong one 0
            assert compute_score(DATA_SOURCE, f"...\n#### {truth}", row.reward_model["ground_truth"]) == 1.0
            assert compute_score(DATA_SOURCE, f"...\n#### {truth + 1}", row.reward_model["ground_truth"]) == 0.0


def test_problem_mix():
    problems = generate_problems(400, seed=0)
    steps = {p.steps for p in problems}
    assert steps == set(range(MIN_STEPS, MAX_STEPS + 1))
    kinds = {k for p in problems for k, _ in p.ops}
    assert kinds == {"add", "sub", "add_groups", "sub_groups", "mul"}
    assert all(len({k for k, _ in p.ops}) >= 2 for p in problems if p.steps >= 2)  # mixed operations
    counts = [sum(p.steps == k for p in problems) for k in range(MIN_STEPS, MAX_STEPS + 1)]
    assert counts[0] > counts[-1] * 3  # easy problems dominate (STEP_WEIGHTS)
    assert len({p.question for p in problems}) == 400  # distinct
    assert max(p.answer for p in problems) < 1000


def test_train_and_val_disjoint(written):
    _, train, val = written
    q_train = {r[0]["content"] for r in pd.read_parquet(train)["prompt"]}
    q_val = {r[0]["content"] for r in pd.read_parquet(val)["prompt"]}
    assert not q_train & q_val


def test_steps_argument():
    rng = random.Random(0)
    for k in range(MIN_STEPS, MAX_STEPS + 1):
        assert generate_problem(rng, steps=k).steps == k
    with pytest.raises(ValueError):
        generate_problem(rng, steps=0)


def test_rewrite_is_skipped_when_unchanged(tmp_path):
    train, val = write_dataset(tmp_path, num_train=10, num_val=5, seed=1)
    mtimes = (train.stat().st_mtime_ns, val.stat().st_mtime_ns)
    write_dataset(tmp_path, num_train=10, num_val=5, seed=1)
    assert (train.stat().st_mtime_ns, val.stat().st_mtime_ns) == mtimes
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["seed"] == 1 and meta["num_train"] == 10
    write_dataset(tmp_path, num_train=12, num_val=5, seed=1)  # parameters changed: rewritten
    assert len(pd.read_parquet(train)) == 12


def test_loads_with_verl_rlhf_dataset(written, tmp_path):
    """verl's own RLHFDataset reads the parquet and emits raw_prompt / index."""
    try:
        from omegaconf import OmegaConf
        from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn
    except Exception as e:  # pragma: no cover - depends on the venv
        pytest.skip(f"verl's RLHFDataset does not import here: {e!r}")
    from transformers import AutoTokenizer

    from seer_verl.prepare.model import find_smollm2_gguf, is_complete, smollm2_dir

    tok_dir = smollm2_dir()
    if is_complete(tok_dir, "smollm2"):
        tok = AutoTokenizer.from_pretrained(str(tok_dir))
    else:
        gguf = find_smollm2_gguf()
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)

    _, train, val = written
    cfg = OmegaConf.create(
        {
            "cache_dir": str(tmp_path / "verl_cache"),
            "prompt_key": "prompt",
            "max_prompt_length": 256,
            "filter_overlong_prompts": True,
            "filter_overlong_prompts_workers": 1,
            "truncation": "error",
        }
    )
    ds = RLHFDataset(data_files=[str(val)], tokenizer=tok, config=cfg)
    assert len(ds) == 40  # nothing filtered at 256 prompt tokens
    row = ds[3]
    assert row["data_source"] == DATA_SOURCE
    assert row["index"] == 3
    assert row["raw_prompt"][0]["role"] == "user"
    assert row["reward_model"]["ground_truth"].lstrip("-").isdigit()
    batch = collate_fn([ds[i] for i in range(4)])
    assert list(batch["index"]) == [0, 1, 2, 3]
    # prompt lengths under SmolLM2's chat template stay small
    ids = tok.apply_chat_template(row["raw_prompt"], add_generation_prompt=True, tokenize=False)
    assert len(tok(ids)["input_ids"]) < 256
