"""seer_verl.aio.bounded: the deadline holds even for an awaitable that does not finish cancelling (asyncio.wait_for
would wait for it), and a result or an error inside the deadline comes back as it is."""

from __future__ import annotations

import asyncio
import time

import pytest

from seer_verl.aio import bounded


async def _stubborn(done: asyncio.Event) -> None:
    """Ignores the first cancellation and keeps going for a long time (a remote call stuck in a dead process)."""
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        await asyncio.sleep(30)
    done.set()


def test_deadline_holds_for_an_awaitable_that_ignores_cancellation():
    async def run():
        t = time.monotonic()
        with pytest.raises(asyncio.TimeoutError, match="stuck call: no answer within 0.2 s"):
            await bounded(_stubborn(asyncio.Event()), 0.2, "stuck call")
        return time.monotonic() - t

    assert asyncio.run(run()) < 2.0


def test_wait_for_would_have_waited():  # the reason for bounded: this would block for 30 s, so it is capped at 1 s
    async def run():
        inner = asyncio.ensure_future(asyncio.wait_for(_stubborn(asyncio.Event()), 0.2))
        done, _ = await asyncio.wait({inner}, timeout=1.0)
        inner.cancel()
        return bool(done)

    assert asyncio.run(run()) is False


def test_results_and_errors_pass_through():
    async def ok():
        await asyncio.sleep(0.01)
        return 7

    async def bad():
        raise ValueError("boom")

    assert asyncio.run(bounded(ok(), 1.0)) == 7
    with pytest.raises(ValueError, match="boom"):
        asyncio.run(bounded(bad(), 1.0))
