"""P13: vLLM 0.32 samples every step of an engine started for speculation through ``RejectionSampler``, drafts or
not, which rebuilds the logprobs with a [batch, vocabulary] zero tensor, scatters, a gather and a second
log-softmax. A step that verifies no draft takes the plain sampler instead; a step with drafts keeps vLLM's path."""

from __future__ import annotations

from types import ModuleType, SimpleNamespace

import pytest
import torch

from seer_verl.compat import cpu_platform as cp


def _runner_module() -> ModuleType:
    mod = ModuleType("fake_vllm_gpu_model_runner")

    class GPUModelRunner:
        def __init__(self) -> None:
            self.got = []

        def _sample(self, logits, spec_decode_metadata):
            self.got.append(spec_decode_metadata)
            return "rejection" if spec_decode_metadata is not None else "plain"

    mod.GPUModelRunner = GPUModelRunner
    return mod


def test_a_step_without_drafts_samples_plainly_and_a_drafted_step_verifies():
    mod = _runner_module()
    cp._patch_sample_without_drafts(mod)
    cp._patch_sample_without_drafts(mod)  # idempotent
    runner = mod.GPUModelRunner()
    logits = torch.zeros(3, 5)
    none_drafted = SimpleNamespace(max_spec_len=0, num_draft_tokens=[0, 0, 0])
    drafted = SimpleNamespace(max_spec_len=2, num_draft_tokens=[0, 2, 1])
    assert runner._sample(logits, none_drafted) == "plain"
    assert runner._sample(logits, drafted) == "rejection" and runner.got[-1] is drafted
    assert runner._sample(logits, None) == "plain"  # a plain engine: untouched
    assert runner.got == [None, drafted, None]


def test_vllms_model_runner_is_patched_when_the_plugin_is_active(cpu_environment):
    if not cp.ACTIVE:
        pytest.skip("CPU plugin inactive (VERL_PLATFORM != cpu)")
    cp.vllm_plugin()
    import inspect

    from vllm.v1.worker import gpu_model_runner

    fn, chain = gpu_model_runner.GPUModelRunner._sample, []
    while fn is not None and not fn.__qualname__.startswith(cp._patch_sample_without_drafts.__name__):
        # another of seer_verl's engine plugins (the replay sampler) may have wrapped it after P13
        chain.append(fn.__qualname__)
        fn = getattr(fn, "__seer_orig__", None) or inspect.getclosurevars(fn).nonlocals.get("orig_sample")
    assert fn is not None, f"GPUModelRunner._sample is not patched by P13: {chain}"
    # what P13 relies on in this version: the plain sampler's path for no metadata, the rejection sampler's for any
    src = inspect.getsource(fn.__seer_orig__)
    assert "if spec_decode_metadata is None:" in src and "self.rejection_sampler(" in src
