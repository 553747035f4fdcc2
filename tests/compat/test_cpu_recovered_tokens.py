"""P10: vLLM's ``sample_recovered_tokens`` drew batch x vocab Gumbel noise at every speculative step, also for rows
without drafts (about 1 ms per running sequence on this CPU). The replacement draws it for drafted rows only; these
tests check that it recovers the same tokens from the same rows, samples the same distribution, and draws nothing
when no row has a draft."""

from __future__ import annotations

import pytest
import torch

VOCAB = 64


@pytest.fixture()
def rs(cpu_environment):
    from vllm.platforms import current_platform

    current_platform.register_triton_kernel_overrides()  # what every vLLM worker does first
    from vllm.v1.sample import rejection_sampler as rs

    from seer_verl.compat import cpu_platform

    if not cpu_platform.ACTIVE:
        pytest.skip("CPU plugin inactive (VERL_PLATFORM != cpu)")
    cpu_platform.activate()
    assert getattr(rs.sample_recovered_tokens, "__seer_patched__", False)
    return rs


def _metadata(generators=None):
    from types import SimpleNamespace

    return SimpleNamespace(generators=generators or {})


def _call(fn, num_draft, drafts, target):
    cu = torch.tensor(num_draft, dtype=torch.int32).cumsum(0).to(torch.int32)
    return fn(max(num_draft), num_draft, cu, torch.tensor(drafts, dtype=torch.int32), None, target,
              _metadata(), torch.device("cpu"))


def _one_hot_rows(tokens):
    t = torch.zeros(len(tokens), VOCAB)
    for i, tok in enumerate(tokens):
        t[i, tok] = 1.0
    return t


def test_same_tokens_from_the_same_rows_as_vllm(rs):
    """Rows 0 and 2 have no drafts: each drafted token's recovered token is the only one its target allows, so
    vLLM's function and the patch must agree token for token (a wrong row or token offset would not)."""
    num_draft = [0, 2, 0, 3, 1]
    drafts = [1, 2, 3, 4, 5, 6]
    wanted = [10, 20, 30, 40, 50, 60]
    target = _one_hot_rows(wanted)
    patched = _call(rs.sample_recovered_tokens, num_draft, drafts, target)
    assert patched.tolist() == wanted
    assert _call(rs.sample_recovered_tokens.__seer_orig__, num_draft, drafts, target).tolist() == wanted


def test_no_drafts_draws_no_noise(rs):
    state = torch.get_rng_state()
    out = _call(rs.sample_recovered_tokens, [0, 0, 0], [], torch.zeros(0, VOCAB))
    assert out.numel() == 0
    assert torch.equal(state, torch.get_rng_state())  # nothing drawn from the global generator


def test_recovered_tokens_follow_the_residual_distribution(rs):
    """Without draft probabilities the recovered token is a sample of the target without the draft token:
    target (0.5, 0.3, 0.2) and draft token 0 give 1 and 2 at 0.6 / 0.4, in every drafted row."""
    torch.manual_seed(0)
    num_draft = [0, 1, 0, 1]
    target = torch.zeros(2, VOCAB)
    target[:, :3] = torch.tensor([0.5, 0.3, 0.2])
    counts = torch.zeros(2, VOCAB)
    n = 4000
    for _ in range(n):
        out = _call(rs.sample_recovered_tokens, num_draft, [0, 0], target)
        counts[0, out[0]] += 1
        counts[1, out[1]] += 1
    for row in counts:
        assert row[0] == 0 and row[3:].sum() == 0
        assert abs(row[1] / n - 0.6) < 0.03  # 4000 draws: sd 0.0077
