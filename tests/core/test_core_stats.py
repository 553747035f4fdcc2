"""The controller's counters are one record (RolloutStats): what it reports and what docs/metrics.md documents."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from seer_verl.core import EngineState, RequestBuffer, RolloutController, RolloutStats, SeerConfig

ROOT = Path(__file__).resolve().parents[2]


def test_every_counter_is_documented_in_the_metrics_table():
    text = (ROOT / "docs" / "metrics.md").read_text()
    documented = set(re.findall(r"`([a-z_0-9]+)`", text))
    missing = [f.name for f in fields(RolloutStats) if f.name not in documented]
    assert not missing, f"RolloutStats fields not in docs/metrics.md: {missing}"


def test_controller_reports_its_counters_from_the_record():
    buf = RequestBuffer.from_prompts([(0, 3)], group_size=2, max_tokens=8)
    ctl = RolloutController(buf, [EngineState(0, capacity_tokens=4096)], SeerConfig(chunk_size=4))
    while not ctl.done:
        for d in ctl.next_dispatches():
            ctl.complete(d, [7] * d.max_tokens, [0.0] * d.max_tokens, stopped=False)
    m = ctl.metrics
    assert {f.name for f in fields(RolloutStats)} <= set(m)
    assert m["requests_finished"] == 2 == m["finished_length"] and m["tokens_generated"] == 16
    assert m["chunks_completed"] == m["dispatches"] == 4 and m == {**m, **ctl.stats.as_dict()}
