"""P14: a drafted step's logprobs are computed for the positions that carry an emitted token only. vLLM 0.32
computes them for every request x (longest draft + 1) positions (vocabulary-wide log-softmax and rank count each);
the patched method must give the same values for every emitted token, which is all ``parse_output`` keeps."""

from __future__ import annotations

import random
from types import ModuleType

import pytest
import torch

from seer_verl.compat import cpu_platform as cp

rs = pytest.importorskip("vllm.v1.sample.rejection_sampler")
from vllm.v1.sample.sampler import Sampler  # noqa: E402
from vllm.v1.spec_decode.metadata import SpecDecodeMetadata  # noqa: E402

VOCAB = 997


def _step(drafts: list[int], seed: int):
    """Logits, metadata and a rejection outcome for one drafted step (rows laid out as vLLM's runner does)."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    meta = SpecDecodeMetadata.make_dummy([[rng.randrange(VOCAB) for _ in range(d)] for d in drafts],
                                         torch.device("cpu"))
    target, bonus, start = [], [], 0
    for d in drafts:
        target += range(start, start + d)
        bonus.append(start + d)
        start += d + 1
    meta.target_logits_indices = torch.tensor(target, dtype=torch.int32)
    meta.bonus_logits_indices = torch.tensor(bonus, dtype=torch.int32)
    logits = torch.randn(len(drafts) + sum(drafts), VOCAB) * 3
    sampled = torch.full((len(drafts), max(drafts) + 1), rs.PLACEHOLDER_TOKEN_ID, dtype=torch.int32)
    for i, d in enumerate(drafts):
        emitted = rng.randint(1, d + 1)  # accepted drafts + the recovered or bonus token
        sampled[i, :emitted] = torch.tensor([rng.randrange(VOCAB) for _ in range(emitted)], dtype=torch.int32)
    target_logits = logits[meta.target_logits_indices.long()].to(torch.float32)
    bonus_logits = logits[meta.bonus_logits_indices.long()].to(torch.float32)
    return meta, logits, target_logits, bonus_logits, sampled


def _kept(tensors, sampled) -> list:
    """What the runner takes from a step's logprobs: the emitted positions' token ids, logprobs and ranks."""
    lists = rs.RejectionSampler.parse_output(sampled, VOCAB, logprobs_tensors=tensors)[1]
    return [[getattr(x, "tolist", lambda: x)() for x in lists[:3]], list(lists[3] or [])]


@pytest.mark.parametrize("mode", ["raw_logprobs", "raw_logits"])
@pytest.mark.parametrize("num_logprobs", [0, 3])
@pytest.mark.parametrize("drafts", [[0, 3, 1, 0, 2], [8], [0, 0, 5, 0, 0, 0, 0, 1], [2, 2]])
def test_emitted_positions_get_vllms_logprobs(mode, num_logprobs, drafts):
    mod = ModuleType("fake_rejection_sampler")  # a subclass on a throwaway module: vLLM's class stays as it is
    vllm_method = rs.RejectionSampler._get_logprobs_tensors
    orig = getattr(vllm_method, "__seer_orig__", vllm_method)
    mod.PLACEHOLDER_TOKEN_ID = rs.PLACEHOLDER_TOKEN_ID
    mod.RejectionSampler = type("RejectionSampler", (rs.RejectionSampler,), {"_get_logprobs_tensors": orig})
    cp._patch_logprobs_of_emitted_tokens(mod)
    cp._patch_logprobs_of_emitted_tokens(mod)  # idempotent
    patched = mod.RejectionSampler(Sampler(logprobs_mode=mode))
    vllms = rs.RejectionSampler(Sampler(logprobs_mode=mode))
    for seed in range(3):
        meta, logits, target_logits, bonus_logits, sampled = _step(drafts, seed)
        ours = patched._get_logprobs_tensors(num_logprobs, meta, logits, target_logits, bonus_logits, sampled)
        theirs = orig(vllms, num_logprobs, meta, logits, target_logits, bonus_logits, sampled)
        assert ours.logprobs.shape == theirs.logprobs.shape
        assert _kept(ours, sampled) == _kept(theirs, sampled)


def test_vllms_rejection_sampler_is_patched_when_the_plugin_is_active(cpu_environment):
    if not cp.ACTIVE:
        pytest.skip("CPU plugin inactive (VERL_PLATFORM != cpu)")
    cp.vllm_plugin()
    fn = rs.RejectionSampler._get_logprobs_tensors
    assert getattr(fn, "__seer_patched__", False), "RejectionSampler._get_logprobs_tensors is not patched by P14"
    import inspect

    # what P14 relies on in this version: vLLM's layout of the rows it reads and the placeholder it filters on
    src = inspect.getsource(fn.__seer_orig__)
    assert "cu_num_sampled_tokens" in src and "PLACEHOLDER_TOKEN_ID" in src
