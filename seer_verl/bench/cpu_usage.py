"""CPU seconds a bench run cost, by role: the engines' model steps against everything around them.

On a host with as many cores as engines (the 2-core CPU bench: one core per engine), every CPU second the rest of
the system spends (the driver, Seer's controller, verl's agent-loop workers, Ray, vLLM's HTTP front ends that
tokenize, detokenize and serve each chunk) is taken from an engine. A rollout design that makes more calls (Seer's
chunks) pays for them here, and the wall time alone cannot say how much.

Roles, from each process's name (the bench starts Ray, so every process of the run descends from it):

* ``engine``: vLLM's engine core and its model worker (``VLLM::EngineCore``, ``VLLM::Worker``);
* ``server``: vLLM's front end inside verl's server actor (``ray::...vLLMHttpServer``): HTTP, tokenization,
  detokenization, output processing of every request or chunk;
* ``control``: all the rest (this process, agent-loop workers, Seer's service, the load balancer, Ray's daemons).

A process that exits during the run loses its CPU time since the last sample (the bench's processes live across
runs, so in practice none does).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

ROLES = ("engine", "server", "control")


def role_of(name: str, cmdline: str) -> str:
    """The role of a process from its name and command line (see the module docstring)."""
    text = f"{name} {cmdline}"
    if "VLLM::" in text or "EngineCore" in text:
        return "engine"
    if "vLLMHttpServer" in text:
        return "server"
    return "control"


def sample(root_pid: int | None = None) -> dict[int, tuple[str, float]]:
    """``pid -> (role, user + system CPU seconds so far)`` of ``root_pid`` (default: this process) and every process
    under it."""
    import psutil

    root = psutil.Process(root_pid or os.getpid())
    out: dict[int, tuple[str, float]] = {}
    for p in [root, *root.children(recursive=True)]:
        try:
            with p.oneshot():
                t = p.cpu_times()
                out[p.pid] = (role_of(p.name(), " ".join(p.cmdline()[:3])), t.user + t.system)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return out


@dataclass(frozen=True)
class CpuUsage:
    """CPU seconds per role between two samples, and the share of the machine (``cores`` x wall) each took."""

    engine_s: float
    server_s: float
    control_s: float
    wall_s: float
    cores: int

    @property
    def outside_engines_share(self) -> float:
        """The share of the machine's CPU (cores x wall) spent outside the engines' model steps."""
        return (self.server_s + self.control_s) / (self.cores * self.wall_s) if self.wall_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "outside_engines_share": round(self.outside_engines_share, 4)}


def usage(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], wall_s: float,
          cores: int | None = None) -> CpuUsage:
    """CPU seconds per role from ``before`` to ``after`` (:func:`sample`); a process first seen in ``after`` counts
    from zero."""
    per = dict.fromkeys(ROLES, 0.0)
    for pid, (role, secs) in after.items():
        prev = before.get(pid)
        per[role] += max(0.0, secs - (prev[1] if prev is not None and prev[0] == role else 0.0))
    return CpuUsage(engine_s=per["engine"], server_s=per["server"], control_s=per["control"], wall_s=wall_s,
                    cores=cores or os.cpu_count() or 1)
