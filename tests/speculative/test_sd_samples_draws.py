"""The losslessness checks' sampler refuses a draw it cannot honour before it starts an engine (the engine-backed
draws themselves are tests/integration/test_sd_lossless.py)."""

from __future__ import annotations

import pytest

from seer_verl.speculative_tools.sd_samples import DRAW_KEYS, sample_many


def test_a_draw_with_an_unknown_key_is_refused_naming_the_draw_and_the_key():
    with pytest.raises(ValueError, match=r"draw 'power': unknown keys \['temprature'\]; allowed: "):
        sample_many("/nonexistent-model", [[1, 2, 3]], n=2, max_tokens=4, sd=False,
                    draws={"off": {"temperature": 1.0}, "power": {"temprature": 0.8}})
    assert set(DRAW_KEYS) == {"temperature", "replay_seed", "split_at", "reverse", "num_prompts"}
