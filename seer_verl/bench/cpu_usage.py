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

The host as a whole (:func:`host_sample`, :func:`host_usage`, Linux ``/proc/stat``): on a shared virtual machine the
bench does not get every core-second of its wall time. The hypervisor gives some to other machines (*steal*), and
processes outside the bench's tree (another job on the same machine) take more. Both slow the engines as if the host
were slower; per run, :class:`HostCpu` says how much of the machine they took.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

ROLES = ("engine", "server", "control")

#: processes outside the engines that a usage names, most CPU first
TOP_OUTSIDE = 6


class ProcCpu(NamedTuple):
    """One process at one sample: its role, its CPU seconds so far and a label naming what it is."""

    role: str
    secs: float
    label: str


def label_of(name: str, cmdline: str) -> str:
    """A short name for a process: a Ray worker's class (``ray::SeerRolloutService.generate`` ->
    ``SeerRolloutService``), else the executable's name."""
    head = cmdline.split(" ", 1)[0] if cmdline else name
    if head.startswith("ray::"):
        return head[len("ray::"):].split(".", 1)[0] or "ray worker"
    return os.path.basename(head) or name


def role_of(name: str, cmdline: str) -> str:
    """The role of a process from its name and command line (see the module docstring)."""
    text = f"{name} {cmdline}"
    if "VLLM::" in text or "EngineCore" in text:
        return "engine"
    if "vLLMHttpServer" in text:
        return "server"
    return "control"


def sample(root_pid: int | None = None) -> dict[int, ProcCpu]:
    """``pid -> ProcCpu(role, user + system CPU seconds so far, label)`` of ``root_pid`` (default: this process, labelled
    ``driver``) and every process under it."""
    import psutil

    root = psutil.Process(root_pid or os.getpid())
    out: dict[int, ProcCpu] = {}
    for p in [root, *root.children(recursive=True)]:
        try:
            with p.oneshot():
                t = p.cpu_times()
                name, cmd = p.name(), " ".join(p.cmdline()[:3])
                label = "driver" if p.pid == root.pid else label_of(name, cmd)
                out[p.pid] = ProcCpu(role_of(name, cmd), t.user + t.system, label)
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
    top_outside: tuple[tuple[str, float], ...] = ()  # (label, CPU s) of the busiest processes outside the engines

    @property
    def total_s(self) -> float:
        """CPU seconds of all the bench's processes."""
        return self.engine_s + self.server_s + self.control_s

    @property
    def outside_engines_share(self) -> float:
        """The share of the machine's CPU (cores x wall) spent outside the engines' model steps."""
        return (self.server_s + self.control_s) / (self.cores * self.wall_s) if self.wall_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["top_outside"] = {label: round(secs, 2) for label, secs in self.top_outside}
        return {**d, "outside_engines_share": round(self.outside_engines_share, 4)}


def usage(before: dict[int, ProcCpu], after: dict[int, ProcCpu], wall_s: float,
          cores: int | None = None) -> CpuUsage:
    """CPU seconds per role from ``before`` to ``after`` (:func:`sample`); a process first seen in ``after`` counts
    from zero. The processes outside the engines are also summed per label (several agent-loop workers are one
    line) and the busiest :data:`TOP_OUTSIDE` labels kept."""
    per = dict.fromkeys(ROLES, 0.0)
    by_label: dict[str, float] = {}
    for pid, now in after.items():
        prev = before.get(pid)
        spent = max(0.0, now.secs - (prev.secs if prev is not None and prev.role == now.role else 0.0))
        per[now.role] += spent
        if now.role != "engine":
            by_label[now.label] = by_label.get(now.label, 0.0) + spent
    top = tuple(sorted(by_label.items(), key=lambda kv: -kv[1])[:TOP_OUTSIDE])
    return CpuUsage(engine_s=per["engine"], server_s=per["server"], control_s=per["control"], wall_s=wall_s,
                    cores=cores or os.cpu_count() or 1, top_outside=top)


#: the fields of /proc/stat's ``cpu`` line, in order (kernel >= 2.6.33)
PROC_STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def host_sample(text: str | None = None) -> dict[str, float] | None:
    """The host's CPU seconds so far per ``/proc/stat`` field (:data:`PROC_STAT_FIELDS`, all cores together), from
    ``text`` (the file's content; default: read it); None where there is no such file (not Linux)."""
    if text is None:
        try:
            with open("/proc/stat") as f:
                text = f.read()
        except OSError:
            return None
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
            vals = [float(x) / ticks for x in parts[1:1 + len(PROC_STAT_FIELDS)]]
            vals += [0.0] * (len(PROC_STAT_FIELDS) - len(vals))
            return dict(zip(PROC_STAT_FIELDS, vals))
    return None


@dataclass(frozen=True)
class HostCpu:
    """What the host's cores did during a run, as shares of the machine (``cores`` x wall): ``steal`` (time the
    hypervisor gave to other machines), ``outside`` (busy in processes outside the bench's tree: another job on this
    machine), ``bench`` (busy in the bench's processes) and ``idle``."""

    steal: float
    outside: float
    bench: float
    idle: float

    @property
    def external(self) -> float:
        """The share of the machine that load other than the bench took from it: steal plus ``outside``."""
        return self.steal + self.outside

    def as_dict(self) -> dict[str, float]:
        return {**{k: round(v, 4) for k, v in asdict(self).items()}, "external": round(self.external, 4)}


def host_usage(before: dict[str, float], after: dict[str, float], bench_cpu_s: float, wall_s: float,
               cores: int | None = None) -> HostCpu | None:
    """:class:`HostCpu` between two :func:`host_sample` readings ``wall_s`` apart, during which the bench's own
    processes used ``bench_cpu_s`` CPU seconds (:attr:`CpuUsage.total_s`); None if either reading is missing."""
    if before is None or after is None or wall_s <= 0:
        return None
    d = {k: max(0.0, after[k] - before[k]) for k in PROC_STAT_FIELDS}
    machine = (cores or os.cpu_count() or 1) * wall_s
    busy = d["user"] + d["nice"] + d["system"] + d["irq"] + d["softirq"]
    return HostCpu(steal=min(1.0, d["steal"] / machine), outside=min(1.0, max(0.0, busy - bench_cpu_s) / machine),
                   bench=min(1.0, bench_cpu_s / machine), idle=min(1.0, (d["idle"] + d["iowait"]) / machine))


def settle(max_wait_s: float = 30.0, window_s: float = 1.0, idle_cores: float = 0.25,
           sampler: Any = None, sleep: Any = None) -> float:
    """Wait until the bench's processes are quiet: one ``window_s`` in which all of them together used less than
    ``idle_cores`` cores, or ``max_wait_s`` seconds. Returns the seconds waited.

    Between runs the engines are idle, but Ray is not always: when the bench kills a policy's workers, or leases
    actors for the next one, the raylet starts replacement worker processes (a few CPU seconds each: interpreter
    start-up and imports). A host-speed probe or a run that starts during such a burst shares the cores with it.
    ``sampler`` (default :func:`sample`) and ``sleep`` (default :func:`time.sleep`) are for tests.
    """
    import time

    sampler = sampler or sample
    sleep = sleep or time.sleep
    waited = 0.0
    prev = sampler()
    while waited < max_wait_s:
        sleep(window_s)
        waited += window_s
        now = sampler()
        spent = sum(max(0.0, p.secs - prev[pid].secs) if pid in prev else p.secs for pid, p in now.items())
        if spent < idle_cores * window_s:
            break
        prev = now
    return waited
