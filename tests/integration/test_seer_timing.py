"""``seer_timing``: the per-batch ``seer/*`` metrics verl logs as ``timing_s/seer/*`` (no engines)."""

from __future__ import annotations

from dataclasses import fields

import pytest

from seer_verl.core.stats import RolloutStats
from seer_verl.integration.launch import seer_timing


def _last(group_lengths):
    return {"metrics": {f.name: 0 for f in fields(RolloutStats)}, "wall_s": 2.0, "decision_s": 0.1,
            "requests": 4, "group_lengths": group_lengths}


def test_every_counter_and_the_group_length_correlation_are_logged():
    t = seer_timing(_last({0: [10, 10], 1: [300, 300]}))  # siblings alike, groups apart
    assert all(f"seer/{f.name}" in t for f in fields(RolloutStats))
    assert t["seer/rollout_s"] == 2.0 and t["seer/requests"] == 4.0
    assert t["seer/group_length_icc"] == pytest.approx(1.0)
    t = seer_timing(_last({0: [10, 300], 1: [300, 10]}))  # every difference within groups
    assert t["seer/group_length_icc"] < 0


def test_no_group_length_correlation_where_it_is_undefined():
    assert "seer/group_length_icc" not in seer_timing(_last({0: [10, 300]}))  # one group
    assert "seer/group_length_icc" not in seer_timing(_last({}))
