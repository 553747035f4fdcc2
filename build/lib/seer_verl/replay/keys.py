"""Replay keys (stdlib only): a sample's identity and a token position mixed into one 63-bit sampler seed.

A sample is named by verl's trajectory identity: the trainer step, the dataset ``index`` of its prompt and its
``rollout_n`` among the prompt's samples (what ``verl.experimental.agent_loop.get_trajectory_info`` computes).
The key travels in vLLM's ``SamplingParams.extra_args[EXTRA_ARG]``; the engine mixes it with the absolute position
of the token being sampled (prompt tokens included, so a chunk that resumes a sample continues its stream).
"""

from __future__ import annotations

import hashlib
from typing import Any

#: the SamplingParams.extra_args entry that carries a sample's replay key
EXTRA_ARG = "seer_replay"

_M64 = (1 << 64) - 1
_M63 = (1 << 63) - 1


def splitmix64(x: int) -> int:
    """SplitMix64's finaliser: a bijection of 64-bit integers that spreads every input bit over the output."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def mix(*parts: int) -> int:
    """A 63-bit non-negative integer from a sequence of integers (order matters)."""
    h = 0x6A09E667F3BCC909
    for p in parts:
        h = splitmix64(h ^ (int(p) & _M64))
    return h & _M63


def _as_int(value: Any) -> int:
    """Integers as themselves; anything else (a string uid, ...) through a stable hash of its text."""
    if isinstance(value, bool):
        return int(value)
    try:
        import numbers

        if isinstance(value, numbers.Integral):
            return int(value)
    except Exception:  # noqa: BLE001
        pass
    return int.from_bytes(hashlib.blake2b(repr(value).encode(), digest_size=8).digest(), "little")


def check_replay_seed(value: Any, key: str = "seer.replay_seed") -> int | None:
    """``None`` (replay off) or a non-negative integer; anything else raises ValueError naming ``key``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key}={value!r} is not allowed: null (free sampling) or an integer >= 0")
    return value


def sample_key(seed: int, step: Any, index: Any, rollout_n: Any) -> int:
    """The replay key of one sample: ``(replay seed, trainer step, dataset index, rollout_n)``."""
    return mix(0x5EE5, seed, _as_int(step), _as_int(index), _as_int(rollout_n))


def token_seed(key: int, position: int) -> int:
    """The sampler seed of the token at absolute sequence ``position`` of the sample with replay ``key``."""
    return mix(key, position)
