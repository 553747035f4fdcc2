"""Worker extension of the bench's ``stock_suffix`` engines: vLLM's own suffix decoding, plus a way to empty its cache.

vLLM's suffix decoding keeps a global cache of the responses an engine has served (``suffix_decoding_max_cached_requests``,
10,000 by default) and drafts from it for later requests. The bench replays the *same* responses in every repeat,
so a ``stock_suffix`` run on engines that already served the batch drafts from the answers themselves: one such
repeat accepted 8,269 draft tokens against 5,643-5,692 for the cold ones and ran 25% faster
(runs of 2026-12-01). Every bench run starts from a cold prefix cache; :meth:`SuffixCacheResetExtension.seer_suffix_cache_reset`
gives vLLM's suffix cache the same treatment (an empty cache of the same size, nothing else changed: drafting is
vLLM's own). The class subclasses verl's worker extension, which verl's servers expect.
"""

from __future__ import annotations

from verl.workers.rollout.vllm_rollout.utils import vLLMColocateWorkerExtension

__all__ = ["EXTENSION", "SuffixCacheResetExtension"]

EXTENSION = "seer_verl.bench.suffix_cache.SuffixCacheResetExtension"


class SuffixCacheResetExtension(vLLMColocateWorkerExtension):
    def seer_suffix_cache_reset(self) -> int:
        """Replace vLLM's suffix cache by an empty one of the same settings; returns the responses it held.
        Call between runs only (no request in flight): the next step finds no request of the old cache."""
        from arctic_inference.suffix_decoding import SuffixDecodingCache

        drafter = getattr(self.model_runner, "drafter", None)
        cache = getattr(drafter, "suffix_cache", None)
        if cache is None:
            raise RuntimeError("seer_suffix_cache_reset: this engine does not run vLLM's suffix decoding")
        # requests of the last step may still count as active: vLLM stops them at the next step that lacks them
        held = len(cache.cached_requests)
        drafter.suffix_cache = SuffixDecodingCache(max_tree_depth=cache.max_tree_depth,
                                                   max_cached_requests=cache.max_cached_requests)
        return held
