"""Unit tests of seer_verl.core.request and seer_verl.core.buffer."""

from __future__ import annotations

import pytest

from seer_verl.core import RequestBuffer, RolloutRequest


def test_request_properties_track_generated_tokens():
    r = RolloutRequest(req_id=0, group_id=3, index_in_group=0, prompt_len=10, max_tokens=8)
    assert (r.generated, r.remaining, r.context_len) == (0, 8, 10)
    r.token_ids.extend([5, 6, 7])
    assert (r.generated, r.remaining, r.context_len) == (3, 5, 13)


def test_from_prompts_expands_groups_in_interleaved_layout_with_first_row_as_probe():
    buf = RequestBuffer.from_prompts([(7, 11), (9, 4)], group_size=3, max_tokens=50)
    assert len(buf) == 6 and buf.num_groups == 2
    assert [r.group_id for r in buf] == [7, 7, 7, 9, 9, 9]
    assert [r.prompt_len for r in buf] == [11, 11, 11, 4, 4, 4]
    assert [r.index_in_group for r in buf] == [0, 1, 2, 0, 1, 2]
    assert [r.is_probe for r in buf] == [True, False, False, True, False, False]
    assert [r.req_id for r in buf] == list(range(6))
    assert buf.group(9).req_ids == [3, 4, 5] and buf.group(9).probe_id == 3
    assert [p.req_id for p in buf.probes()] == [0, 3]


def test_from_rows_accepts_non_adjacent_groups_and_per_row_budgets():
    rows = [(1, 5), (2, 6), (1, 5), (3, 2), (2, 6)]
    buf = RequestBuffer.from_rows(rows, [10, 20, 30, 40, 50], true_lens=[1, 2, 3, 4, 5])
    assert buf.group(1).req_ids == [0, 2] and buf.group(2).req_ids == [1, 4]
    assert [r.is_probe for r in buf] == [True, True, False, True, False]
    assert [r.index_in_group for r in buf] == [0, 0, 1, 0, 1]
    assert buf.group(1).max_tokens == 30 and buf.group(2).max_tokens == 50
    assert [r.true_len for r in buf] == [1, 2, 3, 4, 5]
    assert buf.group_of(buf[4]).group_id == 2
    assert list(buf.groups) == [1, 2, 3]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(rows=[], max_tokens=4), "empty"),
        (dict(rows=[(0, 1)], max_tokens=0), "max_tokens"),
        (dict(rows=[(0, -1)], max_tokens=4), "prompt_len"),
        (dict(rows=[(0, 1)], max_tokens=[4, 4]), "2 entries for 1 rows"),
        (dict(rows=[(0, 1)], max_tokens=4, true_lens=[1, 2]), "true_lens"),
        (dict(rows=[(0, 1)], max_tokens=4, true_lens=[-3]), "true_len"),
    ],
)
def test_from_rows_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RequestBuffer.from_rows(**kwargs)


def test_constructor_rejects_req_id_not_equal_to_position_and_duplicate_prompt_groups():
    reqs = [RolloutRequest(1, 0, 0, 1, 4)]
    with pytest.raises(ValueError, match="req_id"):
        RequestBuffer(reqs)
    with pytest.raises(ValueError, match="twice"):
        RequestBuffer.from_prompts([(0, 1), (0, 2)], group_size=2, max_tokens=4)
    with pytest.raises(ValueError, match="group_size"):
        RequestBuffer.from_prompts([(0, 1)], group_size=0, max_tokens=4)
