"""Exceptions raised by the engine-agnostic Seer core.

Every error carries a message that names the offending request, engine or configuration key, so that
an adapter can log it and a user can act on it without reading the core's source.
"""

from __future__ import annotations

__all__ = [
    "SeerCoreError",
    "ChunkError",
    "PlacementError",
    "NoEngineError",
    "StaleDispatchError",
]


class SeerCoreError(Exception):
    """Base class of every error raised by :mod:`seer_verl.core`."""


class ChunkError(SeerCoreError, ValueError):
    """An engine's chunk result is inconsistent with the chunk that was dispatched.

    Examples: more tokens than the chunk budget, a log-prob list whose length differs from the token
    list, or a result for a request that has already finished.
    """


class PlacementError(SeerCoreError, RuntimeError):
    """A KV reservation would over-commit an engine, or a release does not match a reservation."""


class NoEngineError(SeerCoreError, RuntimeError):
    """No alive engine can ever hold some request (capacity too small, or every engine is dead)."""


class StaleDispatchError(SeerCoreError, RuntimeError):
    """A chunk result arrived for a dispatch that is no longer in flight.

    This happens when an engine was declared failed (:meth:`RolloutController.fail_engine`) while one
    of its chunks was running: the chunk was discarded and the request re-queued, so a late result for
    it must be dropped by the adapter. Use :meth:`RolloutController.is_live` to test without raising.
    """
