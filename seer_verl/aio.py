"""Awaiting with a hard deadline.

``asyncio.wait_for`` cancels what it awaits on timeout and then *waits for the cancellation to finish*: an awaitable
that does not finish cancelling (a remote call into a dead process can be one) keeps its caller waiting for ever.
:func:`bounded` gives up at the deadline whatever the awaitable does: it cancels it and returns at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["bounded"]

T = TypeVar("T")


async def bounded(aw: Awaitable[T], timeout_s: float, what: str = "call") -> T:
    """The result of ``aw``, or ``asyncio.TimeoutError`` naming ``what`` after ``timeout_s`` seconds; never waits
    longer (``aw`` is cancelled, not awaited, at the deadline)."""
    fut = asyncio.ensure_future(aw)
    done, _ = await asyncio.wait({fut}, timeout=timeout_s)
    if not done:
        fut.cancel()
        raise asyncio.TimeoutError(f"{what}: no answer within {timeout_s:g} s")
    return fut.result()
