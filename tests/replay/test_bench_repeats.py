"""The bench's repeat plan and paired-ratio intervals (no engine)."""

from __future__ import annotations

import pytest

from seer_verl.bench.stats import bootstrap_median, paired_ratios, summarize_repeats


def _run(policy, repeat, wall, tokens=1000, tail=10.0, lb=None):
    return {"policy": policy, "repeat": repeat, "wall_s": wall, "total_tokens": tokens,
            "throughput_tok_s": tokens / wall, "tail_s": tail, "wall_over_lower_bound": lb}


def test_ratios_are_paired_by_repeat():
    runs = [_run("stock", 0, 100), _run("seer", 0, 80), _run("stock", 1, 200), _run("seer", 1, 100)]
    r = paired_ratios(runs, "seer")
    assert r["wall_speedup"] == [1.25, 2.0]  # not 150/90: each seer run against the stock run of its repeat
    assert r["throughput_ratio"] == [1.25, 2.0]
    assert r["tail_ratio"] == [1.0, 1.0]


def test_speed_adjusted_speedup_scales_each_wall_by_its_host_speed():
    def probed(policy, repeat, wall, speed, profile):
        return _run(policy, repeat, wall) | {"host_speed": {"tok_s": speed}, "engine_profile": profile}

    # repeat 0: the host was 20% slower during the seer run; repeat 1: equal speeds
    runs = [probed("stock", 0, 100, 50.0, "plain"), probed("seer", 0, 110, 40.0, "priority"),
            probed("stock", 1, 100, 50.0, "plain"), probed("seer", 1, 90, 50.0, "priority"),
            probed("seer_sd", 0, 80, 40.0, "seer_sd"), probed("seer_sd", 1, 80, 50.0, "seer_sd")]
    r = paired_ratios(runs, "seer")
    assert r["wall_speedup"] == [100 / 110, 100 / 90]  # the measured ratios are untouched
    assert r["wall_speedup_speed_adjusted"] == pytest.approx([100 * 50 / (110 * 40), 100 / 90])
    # speculative engines' probes measure their drafting: no adjusted ratio against them
    assert paired_ratios(runs, "seer_sd")["wall_speedup_speed_adjusted"] == []
    s = summarize_repeats(runs)
    assert s["seer"]["wall_speedup_speed_adjusted"]["median"] == pytest.approx((100 * 50 / (110 * 40) + 100 / 90) / 2)
    assert "wall_speedup_speed_adjusted" not in s["stock"] and "wall_speedup_speed_adjusted" not in s["seer_sd"]
    # runs without probes (speed_probe_tokens=0, older reports, the simulator): no adjusted ratio
    assert paired_ratios([_run("stock", 0, 100), _run("seer", 0, 90)], "seer")["wall_speedup_speed_adjusted"] == []


def test_bootstrap_interval_contains_the_median_and_shrinks_with_agreement():
    med, lo, hi = bootstrap_median([1.0, 1.1, 1.2, 1.3, 1.4])
    assert lo <= med == 1.2 <= hi and lo >= 1.0 and hi <= 1.4 and hi > lo
    assert bootstrap_median([1.05] * 4) == (1.05, 1.05, 1.05)
    assert bootstrap_median([1.0, 2.0, 3.0]) == bootstrap_median([1.0, 2.0, 3.0])  # seeded: reproducible
    with pytest.raises(ValueError):
        bootstrap_median([])


def test_summary_per_policy():
    runs = [_run("stock", k, 100 + k, lb=2.0) for k in range(3)] + [_run("seer", k, 90, lb=1.8) for k in range(3)]
    for r in runs:
        r["identity"] = {"share": 1.0}
    s = summarize_repeats(runs)
    assert s["seer"]["repeats"] == 3 and s["seer"]["tokens"] == [1000] * 3
    assert s["seer"]["wall_speedup"]["values"] == [round(x / 90, 4) for x in (100, 101, 102)]
    lo, hi = s["seer"]["wall_speedup"]["ci95"]
    assert 100 / 90 <= lo <= hi <= 102 / 90
    assert s["seer"]["wall_over_lower_bound"]["median"] == 1.8
    assert "wall_speedup" not in s["stock"] and s["stock"]["identical_share"] == [1.0] * 3


def test_without_stock_the_ratios_are_against_the_first_policy():
    from seer_verl.bench.report import summary_base

    runs = [_run("seer", k, 100) for k in range(2)] + [_run("seer_sd", k, 80) for k in range(2)]
    assert summary_base(runs) == "seer"
    s = summarize_repeats(runs, base=summary_base(runs))
    assert s["seer_sd"]["wall_speedup"]["values"] == [1.25, 1.25] and "wall_speedup" not in s["seer"]
    assert summary_base([_run("seer", 0, 1), _run("stock", 0, 1)]) == "stock"


def test_engine_segments_interleave_repeats():
    pytest.importorskip("verl")
    from seer_verl.bench.run import engine_segments

    # one profile: one engine start, policies interleaved A B A B
    assert engine_segments(["stock", "stock_suffix"][:1], 2) == [("plain", [(0, "stock"), (1, "stock")])]
    # stock on plain engines, seer policies on priority engines: restart where the profile changes; repeats run in
    # counterbalanced order (A B C, C B A, A B C), so the boundary runs of one profile share an engine start
    plan = engine_segments(["stock", "divided", "seer"], 3)
    assert plan == [("plain", [(0, "stock")]),
                    ("priority", [(0, "divided"), (0, "seer"), (1, "seer"), (1, "divided")]),
                    ("plain", [(1, "stock"), (2, "stock")]), ("priority", [(2, "divided"), (2, "seer")])]
    runs = [(rep, p) for _, todo in plan for rep, p in todo]
    assert sorted(runs) == [(r, p) for r in range(3) for p in ("divided", "seer", "stock")]  # each once per repeat
    # plain engines start once for calibration even when no policy runs on them
    assert engine_segments(["seer"], 2) == [("plain", []), ("priority", [(0, "seer"), (1, "seer")])]


def test_host_adjusted_speedup_scales_each_wall_by_the_machine_share_it_had():
    def loaded(policy, repeat, wall, external):
        return _run(policy, repeat, wall) | {"host_cpu": {"external": external}}

    # repeat 0: other load took 20% of the machine during the seer run, 0% during stock's
    runs = [loaded("stock", 0, 100, 0.0), loaded("seer", 0, 110, 0.2),
            loaded("stock", 1, 100, 0.1), loaded("seer", 1, 90, 0.1)]
    r = paired_ratios(runs, "seer")
    assert r["wall_speedup"] == [100 / 110, 100 / 90]  # the measured ratios are untouched
    assert r["wall_speedup_host_adjusted"] == pytest.approx([100 / (110 * 0.8), 100 / 90])
    s = summarize_repeats(runs)
    assert s["seer"]["wall_speedup_host_adjusted"]["median"] == pytest.approx((100 / 88 + 100 / 90) / 2)
    assert "wall_speedup_host_adjusted" not in s["stock"]
    # runs without host_cpu (older reports, non-Linux hosts): no adjusted ratio
    assert paired_ratios([_run("stock", 0, 100), _run("seer", 0, 90)], "seer")["wall_speedup_host_adjusted"] == []
