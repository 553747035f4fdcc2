"""Real faults on real engines, injected while a Seer rollout runs.

Four kinds, each what a cluster does to a rollout:

- ``actor``: verl's vLLM server actor is killed (``ray.kill``): the engine is gone for good;
- ``engine_core``: vLLM's ``EngineCore`` process under the server is SIGKILLed (an OOM kill): gone for good;
- ``hang``: every vLLM process under the server is SIGSTOPped (a stuck GPU, a dead NIC): Seer finds it through
  ``seer.chunk_timeout_s``; :meth:`Injector.recover` SIGCONTs it afterwards and the engine is usable again;
- ``draft_server``: the grouped draft server (a named Ray actor) is killed; Ray restarts it empty.

An :class:`Injector` thread watches the service's progress and fires each planned fault when the batch has
completed its share of chunks, on the alive engine with the most chunks in flight (never the same engine twice in
one batch). Every fault records when and where it hit, and whether the batch was still running then.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DESTRUCTIVE", "ENGINE_FAULTS", "FAULT_KINDS", "Fault", "Injector", "engine_core_pid", "engine_pids",
           "phase_of"]

FAULT_KINDS = ("actor", "engine_core", "hang", "draft_server")
#: faults that take an engine out (the others leave every engine serving)
ENGINE_FAULTS = ("actor", "engine_core", "hang")
#: faults after which the engine never serves again
DESTRUCTIVE = ("actor", "engine_core")


def phase_of(fraction: float) -> str:
    """``early`` / ``mid`` / ``tail``: the third of the batch's chunks in which a fault hit."""
    return "early" if fraction < 1 / 3 else "mid" if fraction < 2 / 3 else "tail"


@dataclass
class Fault:
    """One planned fault (``kind``, ``at_fraction`` of the fault-free batch's chunks) and, once injected, where and
    when it hit: ``target`` (engine address or the draft server's name), ``at_chunks`` (chunks completed then),
    ``t_s`` (seconds after the batch started), ``running`` (the batch was unfinished at that moment)."""

    kind: str
    at_fraction: float
    target: str | None = None
    at_chunks: int | None = None
    t_s: float | None = None
    running: bool = False
    pids: list[int] = field(default_factory=list)  # processes a hang stopped

    @property
    def injected(self) -> bool:
        return self.t_s is not None

    @property
    def phase(self) -> str:
        return phase_of(self.at_fraction)


def engine_pids(handle: Any) -> list[int]:
    """The vLLM processes (EngineCore, its workers) under one verl server actor."""
    import psutil
    import ray

    pid = ray.get(handle.__ray_call__.remote(lambda self: os.getpid()), timeout=30)
    return [c.pid for c in psutil.Process(pid).children(recursive=True)]


def engine_core_pid(handle: Any) -> int:
    """The pid of vLLM's ``EngineCore`` process under one verl server actor."""
    import psutil

    for p in engine_pids(handle):
        try:
            proc = psutil.Process(p)
            if "EngineCore" in proc.name() or "EngineCore" in " ".join(proc.cmdline()):
                return p
        except psutil.NoSuchProcess:
            continue
    raise RuntimeError("no vLLM EngineCore process under the server actor")


def hit_engine(handle: Any, kind: str) -> list[int]:
    """Make one engine fail as ``kind``; returns the pids a hang stopped (to resume later)."""
    import ray

    if kind == "actor":
        ray.kill(handle, no_restart=True)
    elif kind == "engine_core":
        os.kill(engine_core_pid(handle), signal.SIGKILL)
    elif kind == "hang":
        pids = engine_pids(handle)
        for p in pids:
            os.kill(p, signal.SIGSTOP)
        return pids
    else:
        raise ValueError(f"fault kind {kind!r} is not an engine fault: one of {ENGINE_FAULTS}")
    return []


class Injector(threading.Thread):
    """Fires ``faults`` (in ``at_fraction`` order) during the running batch of ``service``.

    ``handles``: ``{address: server actor}`` of the engines the batch may use; ``total_chunks``: chunks of the same
    batch without faults (the scale of ``at_fraction``); ``t0``: the batch's start (``time.time()``)."""

    def __init__(self, service: Any, handles: dict[str, Any], faults: list[Fault], total_chunks: int,
                 t0: float, timeout_s: float = 300.0) -> None:
        super().__init__(daemon=True)
        self.service, self.handles, self.total = service, dict(handles), max(1, total_chunks)
        self.faults = sorted(faults, key=lambda f: f.at_fraction)
        self.t0, self.timeout_s = t0, timeout_s
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        import ray

        hit: set[str] = set()
        pending = list(self.faults)
        try:
            deadline = time.time() + self.timeout_s
            while pending and time.time() < deadline and not self._halt.is_set():
                p = ray.get(self.service.progress.remote(), timeout=30)
                f = pending[0]
                if p["running"] and p["chunks_completed"] >= f.at_fraction * self.total and self._fire(f, p, hit):
                    pending.pop(0)
                    continue
                time.sleep(0.01)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            self.error = exc

    def _fire(self, f: Fault, p: dict[str, Any], hit: set[str]) -> bool:
        import ray

        if f.kind == "draft_server":
            name = ray.get(self.service.sd_server_name.remote(), timeout=30)
            if not name:
                return False  # the server starts with the batch's first dispatch
            ray.kill(ray.get_actor(name), no_restart=False)  # the process dies; Ray restarts the actor empty
            f.target = name
        else:
            live = {a: n for a, n in p["inflight"].items() if a in self.handles and a not in hit and n > 0}
            if not live:
                return False  # nothing in flight on an engine not hit yet: wait for the next dispatch
            f.target = max(live, key=live.get)
            hit.add(f.target)
            f.pids = hit_engine(self.handles[f.target], f.kind)
        f.at_chunks, f.t_s, f.running = int(p["chunks_completed"]), time.time() - self.t0, bool(p["running"])
        return True

    def recover(self) -> list[str]:
        """Resume every engine a hang stopped; returns their addresses."""
        out = []
        for f in self.faults:
            if f.kind == "hang" and f.pids:
                for pid in f.pids:
                    try:
                        os.kill(pid, signal.SIGCONT)
                    except ProcessLookupError:
                        pass
                out.append(f.target)
        return out
