"""What a person sees while the bench runs: a quiet screen, a live progress line, the log file named on it.

:func:`quiet_output` sends everything written to the process's stdout/stderr (Ray's forwarded worker logs,
vLLM's and verl's warnings, engine argument dumps) to a log file, and gives back a rich console on the terminal.
:class:`RolloutProgress` is the live line of one rollout: samples finished, tokens generated, seconds, and each
engine's running requests and KV use (from the bench's engine monitor).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["RolloutProgress", "quiet_output"]

#: console width when the output is not a terminal (a file, a pipe, CI): wide enough for the bench table
_WIDTH = 170


@contextmanager
def quiet_output(log_path: Path | None) -> Iterator[Any]:
    """Yield a rich Console on the terminal; while inside, file descriptors 1 and 2 (and so Ray's worker logs,
    vLLM's and verl's output) go to ``log_path``, appended. ``None``: nothing is redirected."""
    from rich.console import Console

    if log_path is None:
        yield Console(width=None if sys.stdout.isatty() else _WIDTH)
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved_out), "w", buffering=1)
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - closed below
    try:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        tty = terminal.isatty()
        yield Console(file=terminal, force_terminal=tty or None, width=None if tty else _WIDTH)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        os.close(saved_out)
        os.close(saved_err)
        log.close()
        terminal.close()


class RolloutProgress:
    """A rich renderable: ``label  37/96 samples  12,345 tokens  85 s  engines 9 run 82% KV | 8 run 64% KV``.

    ``finished()`` returns the samples finished so far (None if unknown); ``monitor`` is the bench's
    :class:`~seer_verl.integration.engines.EngineMonitor` of this rollout (its latest sample per engine)."""

    def __init__(self, label: str, total: int, monitor: Any, finished: Callable[[], int | None]) -> None:
        self.label = label
        self.total = total
        self.monitor = monitor
        self._finished = finished
        self._t0 = time.time()
        self._last_done: int | None = 0
        self._last_poll = 0.0

    def _done(self) -> int | None:
        now = time.time()
        if now - self._last_poll >= 1.0:  # at most one poll of the rollout per second
            self._last_poll = now
            try:
                self._last_done = self._finished()
            except Exception:  # noqa: BLE001 - progress only: never fail a rollout for it
                pass
        return self._last_done

    def text(self) -> str:
        tls = self.monitor.timelines
        tokens = sum(tl.increase("gen_tokens") for tl in tls)
        engines = " | ".join(f"{tl.running[-1]:.0f} run {100 * tl.kv_usage[-1]:.0f}% KV" for tl in tls if tl.running)
        done = self._done()
        samples = f"{done}/{self.total}" if done is not None else f"?/{self.total}"
        return (f"{self.label}  {samples} samples  {tokens:,.0f} tokens  {time.time() - self._t0:.0f} s  "
                f"engines {engines or '-'}")

    def __rich__(self) -> Any:
        from rich.spinner import Spinner

        return Spinner("dots", text=self.text())
