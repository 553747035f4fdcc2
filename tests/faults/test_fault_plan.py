"""The fault campaign's plan and row checks, without engines: the seeded plan covers every fault kind evenly and
never takes out every engine; the row check catches a lost, a swapped and a changed sample."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from seer_verl.faults.campaign import CampaignConfig, check_rows, plan_runs
from seer_verl.faults.inject import ENGINE_FAULTS, FAULT_KINDS, phase_of


def test_plan_is_seeded_balanced_and_survivable():
    a, b = plan_runs(20, 0, 3, 0.5), plan_runs(20, 0, 3, 0.5)
    assert [[(f.kind, f.at_fraction) for f in p] for p in a] == [[(f.kind, f.at_fraction) for f in p] for p in b]
    assert a != plan_runs(20, 1, 3, 0.5)
    first = Counter(p[0].kind for p in a)
    assert set(first) == set(FAULT_KINDS) and max(first.values()) - min(first.values()) <= 1
    assert all({p[0].kind for p in a[k:k + 4]} == set(FAULT_KINDS) for k in range(0, 20, 4))  # shuffled rounds
    assert any(len(p) == 2 for p in a)
    for p in a:
        assert all(0.0 <= f.at_fraction <= 0.9 for f in p)
        assert [f.at_fraction for f in p] == sorted(f.at_fraction for f in p)
        assert len({f.kind for f in p}) == len(p)
        assert sum(f.kind in ENGINE_FAULTS for f in p) < 3
    # two engines: never two engine faults in one run (one engine must survive)
    assert all(sum(f.kind in ENGINE_FAULTS for f in p) < 2 for p in plan_runs(40, 3, 2, 1.0))


def test_phases():
    assert [phase_of(x) for x in (0.0, 0.3, 0.34, 0.6, 0.67, 0.9)] == ["early", "early", "mid", "mid", "tail", "tail"]


@pytest.mark.parametrize("key, value", [("runs", 0), ("engines", 1), ("chunk_size", 0), ("second_fault_p", 1.5),
                                        ("chunk_timeout_s", 0.0)])
def test_bad_settings_are_refused_by_name(key, value):
    with pytest.raises(ValueError, match=f"{key}={value!r} is not allowed"):
        CampaignConfig(**{key: value}).check()


def _proto(uids, index, prompts, responses, lens):
    from verl import DataProto

    responses = torch.tensor(responses)
    mask = torch.zeros_like(responses)
    for i, n in enumerate(lens):
        mask[i, :n] = 1
    return DataProto.from_dict(
        tensors={"prompts": torch.tensor(prompts), "responses": responses, "response_mask": mask,
                 "rollout_log_probs": -torch.rand(responses.shape)},
        non_tensors={"uid": np.array(uids, dtype=object), "index": np.array(index, dtype=np.int64)},
    )


def test_row_check_finds_lost_swapped_and_changed_samples():
    uids, index, prompts = ["a", "a", "b", "b"], [0, 0, 1, 1], [[1, 2], [1, 2], [3, 4], [3, 4]]
    resp = [[5, 6, 7], [5, 8, 0], [9, 9, 9], [4, 3, 0]]
    ref = _proto(uids, index, prompts, resp, [3, 2, 3, 2])
    assert check_rows(ref, ref, ref) == {"rows": 4, "returned": 4, "lost": 0, "misplaced": 0, "identical": 4,
                                         "bad_logprobs": 0}
    # rows 1 and 2 swapped (another group's sample in a row): both misplaced, both not identical
    swapped = _proto(["a", "b", "a", "b"], [0, 1, 0, 1], [[1, 2], [3, 4], [1, 2], [3, 4]],
                     [resp[0], resp[2], resp[1], resp[3]], [3, 3, 2, 2])
    r = check_rows(ref, swapped, ref)
    assert r["misplaced"] == 2 and r["identical"] == 2
    # a sample with no response (lost) and one whose tokens changed after a resume
    changed = _proto(uids, index, prompts, [resp[0], [0, 0, 0], resp[2], [4, 1, 0]], [3, 0, 3, 2])
    r = check_rows(ref, changed, ref)
    assert r["lost"] == 1 and r["identical"] == 2 and r["misplaced"] == 0
    # a batch that came back short
    short = _proto(uids[:3], index[:3], prompts[:3], resp[:3], [3, 2, 3])
    assert check_rows(ref, short, ref)["lost"] == 1
