"""Finding verl's rollout engines and watching them: server handles/addresses and a /metrics poller.

verl's ``vLLMHttpServer`` runs vLLM's OpenAI app, which serves Prometheus metrics at ``/metrics`` when
``rollout.disable_log_stats=false``. :class:`EngineMonitor` polls every engine on a background thread and keeps
a timeline of running/waiting requests, KV-cache usage and the preemption counter: the same instrument for every
policy, and nothing inside the engines is touched.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Any

from seer_verl.backends import VLLM, EngineBackend


async def lost_reason(server: Any, timeout_s: float, backend: EngineBackend = VLLM) -> str | None:
    """Why an engine is certainly lost (its server actor is gone, or the engine reports its core dead), or None. A
    probe that does not answer within ``timeout_s``, or fails otherwise, proves nothing (a busy engine): callers
    bound hangs with their own timeouts. Used by the rollout service while chunks wait, and by the weight sync."""
    import asyncio

    from ray.exceptions import RayActorError

    from seer_verl.aio import bounded

    try:
        errored = await bounded(server.__ray_call__.remote(backend.errored_in_server), timeout_s, "liveness probe")
    except asyncio.TimeoutError:
        return None
    except RayActorError as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        return f"server actor died ({type(exc).__name__}: {first})"
    except Exception:  # noqa: BLE001 - not a proof of death
        return None
    return f"{backend.name} reports its engine core dead" if errored else None


def servers_of(load_balancer: Any) -> dict[str, Any]:
    """``{address: actor handle}`` of every rollout server behind verl's load balancer actor.

    verl exposes server ids but not handles; ``__ray_call__`` reads them off the actor without changing it.
    """
    import ray

    return ray.get(load_balancer.__ray_call__.remote(lambda self: dict(self._servers)))


def scrape(address: str, timeout: float = 2.0, metrics: Mapping[str, str] | None = None) -> dict[str, float]:
    """One read of an engine's /metrics: summed values of the series in ``metrics`` (sample name -> key;
    default: the vLLM backend's)."""
    metrics = VLLM.metrics if metrics is None else metrics
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout) as r:
        text = r.read().decode()
    return parse_metrics(text, metrics)


def parse_metrics(text: str, metrics: Mapping[str, str]) -> dict[str, float]:
    """Summed values of the samples named in ``metrics`` (sample name -> key) in Prometheus text ``text``.

    Only the lines of those samples reach the Prometheus parser: vLLM's page (~65 KB, 580 lines) is mostly histogram
    buckets. Parsing all of it took 29 ms a read on the 2-core bench host (0.8 ms filtered); at two engines read
    twice a second that was ~12% of a core, taken from the engines."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = [line for line in text.splitlines()
              if line and line[0] != "#" and line.split("{", 1)[0].split(" ", 1)[0] in metrics]
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families("\n".join(wanted) + "\n"):
        for s in fam.samples:
            key = metrics.get(s.name)
            if key is not None:
                out[key] = out.get(key, 0.0) + float(s.value)
    return out


@dataclass
class EngineTimeline:
    address: str
    t: list[float] = field(default_factory=list)
    running: list[float] = field(default_factory=list)
    waiting: list[float] = field(default_factory=list)
    kv_usage: list[float] = field(default_factory=list)
    preemptions: list[float] = field(default_factory=list)
    gen_tokens: list[float] = field(default_factory=list)
    prompt_tokens: list[float] = field(default_factory=list)
    cached_tokens: list[float] = field(default_factory=list)

    def increase(self, series: str) -> float:
        """How much the counter ``series`` (e.g. ``"gen_tokens"``) rose over the samples taken; 0 with no sample."""
        values = getattr(self, series)
        return values[-1] - values[0] if values else 0.0

    def as_dict(self, t0: float) -> dict[str, Any]:
        return {
            "address": self.address,
            "t": [round(x - t0, 3) for x in self.t],
            "running": self.running,
            "waiting": self.waiting,
            "kv_usage": self.kv_usage,
            "preemptions": self.preemptions,
            "gen_tokens": self.gen_tokens,
            "prompt_tokens": self.prompt_tokens,
            "cached_tokens": self.cached_tokens,
        }


class EngineMonitor:
    """Polls each engine's /metrics every ``interval_s`` on a daemon thread (start/stop around one run)."""

    def __init__(self, addresses: list[str], interval_s: float = 0.5, backend: EngineBackend = VLLM) -> None:
        self.addresses = list(addresses)
        self.interval_s = interval_s
        self._metrics = backend.metrics
        self.timelines = [EngineTimeline(a) for a in self.addresses]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors = 0

    def sample(self) -> None:
        now = time.time()
        for tl in self.timelines:
            try:
                m = scrape(tl.address, metrics=self._metrics)
            except Exception:
                self.errors += 1
                continue
            tl.t.append(now)
            tl.running.append(m.get("running", 0.0))
            tl.waiting.append(m.get("waiting", 0.0))
            tl.kv_usage.append(m.get("kv_usage", 0.0))
            tl.preemptions.append(m.get("preemptions", 0.0))
            tl.gen_tokens.append(m.get("gen_tokens", 0.0))
            tl.prompt_tokens.append(m.get("prompt_tokens", 0.0))
            tl.cached_tokens.append(m.get("cached_tokens", 0.0))

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "EngineMonitor":
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="seer-engine-monitor", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.sample()

    def preemptions(self) -> int:
        """Preemptions during the monitored window, summed over engines."""
        return int(sum(tl.increase("preemptions") for tl in self.timelines))

    def prefill(self) -> dict[str, int]:
        """Prompt tokens of the requests the engines admitted during the monitored window, summed over engines:
        ``prompt_tokens`` in all, ``cached_tokens`` supplied by the prefix cache, ``computed_tokens`` prefilled (their
        difference). A chunk of a divided request is a new request (its context counts as its prompt); a request
        resumed after a preemption is not counted again (vLLM's counters), so stock's recompute is not included."""
        prompt = int(sum(tl.increase("prompt_tokens") for tl in self.timelines))
        cached = int(sum(tl.increase("cached_tokens") for tl in self.timelines))
        return {"prompt_tokens": prompt, "cached_tokens": cached, "computed_tokens": prompt - cached}


def kv_capacity(server: Any, timeout_s: float | None = None, backend: EngineBackend = VLLM) -> tuple[int, int]:
    """``(capacity_tokens, block_size)`` of a running verl rollout server's engine, as the engine computed them
    (:meth:`EngineBackend.capacity_in_server`). Raises if the server does not answer within ``timeout_s`` (a lost
    engine) or reports no KV."""
    import ray

    tokens, block = ray.get(server.__ray_call__.remote(backend.capacity_in_server), timeout=timeout_s)
    if tokens <= 0:
        raise RuntimeError(f"could not read the KV capacity of the {backend.name} engine (is it started?)")
    return tokens, block
