"""The bench's stock_suffix engines empty vLLM's suffix cache between runs (a warm cache holds the batch's own
replayed responses and made one repeat 25% faster)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from arctic_inference.suffix_decoding import SuffixDecodingCache

from seer_verl.bench.policies import engine_overrides
from seer_verl.bench.suffix_cache import EXTENSION, SuffixCacheResetExtension


def _worker(cache):
    w = object.__new__(SuffixCacheResetExtension)  # vLLM builds the worker; only model_runner.drafter is read
    w.model_runner = SimpleNamespace(drafter=SimpleNamespace(suffix_cache=cache))
    return w


def test_reset_empties_the_cache_and_keeps_its_settings():
    cache = SuffixDecodingCache(max_tree_depth=32, max_cached_requests=100)
    for r in ("a", "b"):
        cache.start_request(r, [1, 2, 3])
        cache.add_active_response(r, [4, 5, 6, 7])
    cache.stop_request("a")  # "b" is still active, as the last request of a run is for vLLM
    assert cache.speculate("b", [1, 2, 3, 4], 4).token_ids  # the cache drafts from the responses it holds
    w = _worker(cache)
    assert w.seer_suffix_cache_reset() == 2
    fresh = w.model_runner.drafter.suffix_cache
    assert fresh is not cache and not fresh.cached_requests and not fresh.active_requests
    assert (fresh.max_tree_depth, fresh.max_cached_requests) == (32, 100)
    assert w.seer_suffix_cache_reset() == 0
    with pytest.raises(RuntimeError, match="does not run vLLM's suffix decoding"):
        _worker(None).seer_suffix_cache_reset()


def test_stock_suffix_engines_start_with_the_extension():
    kw = engine_overrides("suffix", 8)
    assert any(o.endswith(f"worker_extension_cls={EXTENSION}") for o in kw)
    assert any("speculative_config={method:suffix" in o for o in kw)
