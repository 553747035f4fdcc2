"""The dispatch micro-benchmark runs and stays far below 1 ms of CPU per decision."""

from __future__ import annotations

from seer_verl.core import run_dispatch_microbench


def test_microbench_reports_per_size_rows_and_meets_the_decision_budget():
    rows = run_dispatch_microbench(sizes=(100, 10000), decisions=300)
    assert [r["n_requests"] for r in rows] == [100, 10000]
    for r in rows:
        assert r["decisions"] == 300 and r["mode"] == "inflight"
        assert 0 < r["p50_us"] <= r["p99_us"] <= r["max_us"]
        assert r["dispatches_per_cycle"] > 0.5
        # thread CPU time, immune to a busy machine; the target is < 1 ms per decision
        assert r["cpu_mean_us"] < 1000, r
    kv = run_dispatch_microbench(sizes=(1000,), decisions=200, mode="kv")
    assert kv[0]["mode"] == "kv" and kv[0]["cpu_mean_us"] < 1000
