"""The per-run figures and ratios the bench and the simulator share (seer_verl/run_metrics.py)."""

from __future__ import annotations

import pytest

from seer_verl.run_metrics import RATIOS, add_vs_stock, busy_seconds, ratios, set_lower_bound, tail_seconds

#: keys every run record of the bench and of the simulator carries (the module's table)
SHARED = {"policy", "wall_s", "tail_s", "throughput_tok_s", "total_tokens", "num_requests", "num_preemptions",
          "engine_busy_s"}


def _run(policy, wall, tail, tokens=1000, repeat=0):
    return {"policy": policy, "repeat": repeat, "wall_s": wall, "tail_s": tail, "total_tokens": tokens,
            "throughput_tok_s": tokens / wall}


def test_tail_is_the_time_after_90_percent_finished():
    assert tail_seconds([float(i) for i in range(1, 11)]) == 1.0  # 10 requests: last (10) - the 9th (9)
    assert tail_seconds([5.0]) == 0.0 and tail_seconds([]) == 0.0
    assert tail_seconds([1.0, 2.0, 3.0, 100.0] + [2.5] * 16) == 97.5  # 20 requests: 100 - the 18th (2.5)


def test_busy_time_is_the_union_of_intervals():
    assert busy_seconds([(0, 2), (1, 3), (5, 6)]) == 4
    assert busy_seconds([]) == 0


def test_ratio_orientation_and_pairing_by_repeat():
    runs = [_run("stock", 100, 20), _run("seer", 80, 10), _run("stock", 200, 20, repeat=1),
            _run("seer", 100, 40, repeat=1), _run("oracle", 50, 5, repeat=2)]
    add_vs_stock(runs)
    assert runs[1]["vs_stock"] == {"wall_speedup": 1.25, "throughput_ratio": 1.25, "tail_ratio": 0.5}
    assert runs[3]["vs_stock"]["wall_speedup"] == 2.0 and runs[3]["vs_stock"]["tail_ratio"] == 2.0  # its own repeat
    assert runs[0]["vs_stock"]["wall_speedup"] == 1.0
    assert "vs_stock" not in runs[4]  # no stock run in its repeat
    assert set(ratios(runs[1], runs[0])) == set(RATIOS)
    assert ratios(_run("seer", 80, 10), _run("stock", 100, 0))["tail_ratio"] is None  # no tail to compare with


def test_lower_bound():
    r = _run("seer", 80, 10)
    set_lower_bound(r, 40.0)
    assert r["lower_bound_s"] == 40.0 and r["wall_over_lower_bound"] == 2.0
    q = _run("seer", 80, 10)
    set_lower_bound(q, None)
    assert "wall_over_lower_bound" not in q


def test_simulator_and_bench_records_share_the_keys():
    from seer_verl.bench.metrics import summarize
    from seer_verl.sim.runner import simulate
    from seer_verl.sim.workloads import make_workload

    w = make_workload("cpu_synth", seed=0, num_groups=2, group_size=4, max_tokens=64)
    sim = simulate(w, "seer", seed=0, keep_requests=False)
    assert SHARED <= set(sim), SHARED - set(sim)
    bench = summarize("seer", 10.0, [{"row": 0, "length": 5, "finish_s": 9.0, "intervals": [(0, 1.0, 9.0)]}], 1)
    bench["num_preemptions"] = 0  # the bench adds vLLM's counter after the run
    assert SHARED <= set(bench), SHARED - set(bench)
    report = {"runs": [simulate(w, p, seed=0, keep_requests=False) for p in ("stock", "seer")],
              "lower_bound": {"lower_bound_s": 1.0}}
    from seer_verl.sim.report import add_ratios

    add_ratios(report)
    seer = report["runs"][1]
    assert seer["vs_stock"]["wall_speedup"] == pytest.approx(report["runs"][0]["wall_s"] / seer["wall_s"])
    assert seer["wall_over_lower_bound"] == pytest.approx(seer["wall_s"])
