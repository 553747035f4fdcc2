"""`seer-verl compare`'s summary: ratios over iterations 2..N, per-token rows, parity band and test (from verl's
per-step metric records, as its file logger writes them)."""

from __future__ import annotations

import json

import pytest

from seer_verl.train.compare import load_runs, report, summarize


def _rows(gen: list[float], length: list[float], pdiff: float) -> list[dict]:
    return [{"timing_s/gen": g, "timing_s/step": 3 * g, "timing_s/update_actor": 2 * g,
             "timing_per_token_ms/gen": 1000 * g / n, "perf/throughput": n / (3 * g),
             "critic/score/mean": 0.0, "response_length/mean": n, "training/rollout_probs_diff_mean": pdiff + 1e-4 * i}
            for i, (g, n) in enumerate(zip(gen, length))]


def test_summary_ratios_skip_warmup_and_parity_flags_a_shifted_run(tmp_path):
    runs = {"stock": {0: _rows([99, 20, 20, 20], [100] * 4, 0.005), 1: _rows([99, 22, 22, 22], [110] * 4, 0.006)},
            "seer": {0: _rows([50, 10, 10, 10], [100] * 4, 0.0055)},
            "shifted": {0: _rows([50, 21, 21, 21], [105] * 4, 0.05)}}
    s = summarize(runs)
    assert s["mean_iter2_onward"]["stock"]["timing_s/gen"] == pytest.approx(21.0)  # iteration 1 left out
    assert s["speedup_over_baseline"]["seer"]["timing_s/gen"] == pytest.approx(2.1)
    assert s["speedup_over_baseline"]["seer"]["perf/throughput"] > 1  # higher throughput = speed-up > 1
    par = s["parity"]["training/rollout_probs_diff_mean"]
    assert par["baseline_seed_spread"] == pytest.approx(0.001)
    assert par["seer"]["fraction_inside_baseline_band"] == 1.0
    assert par["shifted"]["fraction_inside_baseline_band"] == 0.0
    assert par["shifted"]["mann_whitney_p"] < 0.05 < par["seer"]["mann_whitney_p"]
    # the report is rebuilt from the .jsonl files verl's file logger writes
    for c, by_seed in runs.items():
        for seed, rows in by_seed.items():
            (tmp_path / f"{c}_seed{seed}.jsonl").write_text(
                "".join(json.dumps({"step": i + 1, "data": r}) + "\n" for i, r in enumerate(rows)))
    again = summarize(load_runs(tmp_path, ["stock", "seer"], [0, 1]))
    assert again["mean_iter2_onward"]["seer"]["timing_s/gen"] == pytest.approx(10.0)
    report(again, tmp_path, ["stock", "seer"])
    text = (tmp_path / "compare_table.txt").read_text()
    assert "timing_per_token_ms/gen" in text and "MW p" in text
    assert (tmp_path / "iteration_time.png").is_file() and (tmp_path / "reward.png").is_file()


def test_replayed_runs_pair_iterations_and_report_identity(tmp_path):
    runs = {"stock": {0: _rows([99, 20, 30, 40], [100, 101, 102, 103], 0.005)},
            "seer": {0: _rows([50, 10, 20, 20], [100, 101, 102, 104], 0.005)}}
    s = summarize(runs)
    gen = s["paired"]["seer"]["timing_s/gen"]
    assert gen["values"] == [2.0, 1.5, 2.0]  # iteration k of seer against iteration k of stock, from iteration 2
    assert gen["median"] == 2.0 and gen["ci95"][0] <= 2.0 <= gen["ci95"][1]
    rel = s["paired"]["seer"]["relative_difference"]["response_length/mean"]
    assert rel[:3] == [0.0, 0.0, 0.0] and rel[3] == pytest.approx(1 / 103)
    # what the step would gain if only the rollout changed: stock's step with seer's gen in place of its own
    assert s["paired"]["seer"]["step_from_gen_alone"]["values"] == [1.2, 1.125, 1.2]
    assert s["paired"]["seer"]["rollout_share"] == pytest.approx([1 / 3] * 3)
    assert s["paired"]["seer"]["rollout_share_baseline"] == pytest.approx([1 / 3] * 3)
    report(s, tmp_path, ["stock", "seer"], replayed=True)
    text = (tmp_path / "compare_table.txt").read_text()
    assert "replayed runs (same samples)" in text
    lines = {ln.split("│")[1].strip(): ln for ln in text.splitlines() if ln.count("│") >= 3}
    assert "2.000 [" in lines["timing_s/gen"] and "2.000 [" in lines["timing_s/update_actor"]  # every phase
    assert "1.200 [" in lines["step, if only gen changed"]
    assert "33%" in lines["rollout share of the step (gen / step; stock: 33%)"]


def test_replay_overrides_switch_stock_to_the_replay_manager():
    pytest.importorskip("hydra")
    from seer_verl.train.compare import STOCK_REPLAY_MANAGER, replay_overrides

    assert replay_overrides("grpo_seer", 5) == ["++seer.replay_seed=5"]
    assert replay_overrides("grpo_stock", 5) == [
        "++seer.replay_seed=5", f"++actor_rollout_ref.rollout.agent.agent_loop_manager_class={STOCK_REPLAY_MANAGER}"]


def test_progress_line_follows_the_metrics_verl_appends(tmp_path):
    from seer_verl.train.compare import TrainingProgress

    metrics = tmp_path / "grpo_seer_seed0.jsonl"
    prog = TrainingProgress("grpo_seer seed 0", 3, metrics)
    assert "iteration 1/3" in prog.text() and "last step" not in prog.text()  # nothing logged yet
    metrics.write_text(json.dumps({"step": 1, "data": {"timing_s/step": 57.2, "timing_s/gen": 16.0}}) + "\n")
    assert "iteration 2/3  last step 57.2 s (gen 16.0 s)" in prog.text()
    with metrics.open("a") as f:  # the next record, half written: still iteration 2
        f.write(json.dumps({"step": 2, "data": {"timing_s/step": 29.2, "timing_s/gen": 14.2}}) + "\n")
        f.write('{"step": 3, "data": {"timing_s')
    assert "iteration 3/3  last step 29.2 s (gen 14.2 s)" in prog.text()
