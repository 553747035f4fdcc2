"""Discrete-event loop: engines' step completions in time order, submissions from a policy driver.

Each engine has at most one pending event, the end of its current (macro-)step, filed as ``(time, seq, engine,
version)`` in a heap; an engine whose plan changes (a new request cut its macro-step) bumps its version, so the
old entry is skipped when it surfaces. On an event the engine commits the step, the driver reacts to the
submissions that completed (and may submit new ones to any engine), and every idle engine with work plans its
next step at the same instant.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Protocol

from .engine import SimEngine, SimSeq

__all__ = ["Driver", "EventLoop"]


class Driver(Protocol):
    def start(self, loop: EventLoop) -> None: ...

    def on_done(self, loop: EventLoop, engine: SimEngine, done: list[SimSeq]) -> None: ...

    @property
    def finished(self) -> bool: ...


class EventLoop:
    def __init__(self, engines: Sequence[SimEngine], progress=None) -> None:
        self.engines = list(engines)
        self.now = 0.0
        self._heap: list[tuple[float, int, int, int]] = []
        self._seq = 0
        self._touched: set[int] = set()
        self.events = 0
        self.progress = progress

    def _push(self, e: SimEngine) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (e.t_end, self._seq, e.engine_id, e.version))

    def submit(self, engine_id: int, s: SimSeq) -> None:
        """Queue ``s`` on an engine at the current time."""
        e = self.engines[engine_id]
        replan = e.add(s, self.now)
        if e.busy:
            if replan:  # macro-step cut: new end time
                self._push(e)
        else:
            self._touched.add(engine_id)

    def _plan_touched(self) -> None:
        for eid in sorted(self._touched):
            e = self.engines[eid]
            if not e.busy and e.plan(self.now) is not None:
                self._push(e)
        self._touched.clear()

    def run(self, driver: Driver) -> float:
        driver.start(self)
        self._plan_touched()
        heap = self._heap
        while heap:
            t, _, eid, ver = heapq.heappop(heap)
            e = self.engines[eid]
            if ver != e.version or not e.busy:
                continue
            self.now = t
            self.events += 1
            done = e.finish_step(t)
            self._touched.add(eid)
            if done:
                driver.on_done(self, e, done)
                if self.progress is not None:
                    self.progress(t, len(done))
            self._plan_touched()
        if not driver.finished:
            stuck = [(e.engine_id, len(e.running), len(e.waiting)) for e in self.engines if e.has_work]
            raise RuntimeError(f"simulation stalled at t={self.now:.1f}s with unfinished requests; engines {stuck}")
        return self.now
