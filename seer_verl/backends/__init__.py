"""The engine seam: what Seer needs from the inference engine behind each of verl's rollout servers, as one
protocol (:class:`EngineBackend`), with one implementation per engine, registered by verl's rollout name
(``actor_rollout_ref.rollout.name``).

Seer talks to an engine only through verl's rollout server actor and this protocol: the engine's KV capacity,
whether it is dead, an RPC into its workers (grouped speculative decoding), its Prometheus metric names (the
bench's monitor) and its ``engine_kwargs`` node. vLLM is the only backend so far (:mod:`.vllm`); SGLang, verl's
other rollout engine, would be one more module implementing the protocol and one :func:`register_backend` line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = ["BACKENDS", "VLLM", "EngineBackend", "backend_of", "register_backend"]


@runtime_checkable
class EngineBackend(Protocol):
    """One inference engine as Seer uses it. The ``*_in_server`` methods run inside verl's rollout server actor
    (sent there with Ray's ``__ray_call__``), where ``server`` is that actor's instance."""

    #: verl's rollout name (``actor_rollout_ref.rollout.name``)
    name: str
    #: Prometheus sample name -> the monitor's key (``running``, ``waiting``, ``kv_usage``, ``preemptions``,
    #: ``gen_tokens``); several samples may feed one key (a counter renamed between engine versions)
    metrics: Mapping[str, str]
    #: the node of ``actor_rollout_ref.rollout.engine_kwargs`` this engine reads
    engine_kwargs_key: str

    def capacity_in_server(self, server: Any) -> tuple[int, int]:
        """``(KV tokens the engine can hold, block size)`` as the running engine computed them."""

    def errored_in_server(self, server: Any) -> bool:
        """True if the engine reports itself dead."""

    def rpc_in_server(self, server: Any, method: str, args: tuple, timeout: float) -> list[Any]:
        """Call ``method(*args)`` on every worker of the engine (its extension methods); one result per worker."""

    def progress_in_server(self, server: Any, wanted: dict[str, tuple[int, int]]) -> dict[str, tuple]:
        """For each running request ``request_id -> (lo, hi)``: ``(n, tokens, logprobs)`` with ``n`` the tokens it
        has generated so far and, once ``n >= hi``, its tokens ``[lo, hi)`` and their log-probs (None before; log-probs
        None if the request did not ask for them). Requests the engine no longer runs are left out."""

    def abort_in_server(self, server: Any, request_ids: list[str]) -> None:
        """Abort these requests (their ``generate`` calls return what they generated); returns without waiting."""


#: every engine backend, by verl's rollout name
BACKENDS: dict[str, EngineBackend] = {}


def register_backend(backend: EngineBackend) -> EngineBackend:
    if not isinstance(backend, EngineBackend):
        raise TypeError(f"{backend!r} does not implement EngineBackend")
    if BACKENDS.get(backend.name, backend) is not backend:
        raise ValueError(f"engine backend {backend.name!r} is registered twice")
    BACKENDS[backend.name] = backend
    return backend


def backend_of(rollout_name: str | None) -> EngineBackend:
    """The backend of verl's ``actor_rollout_ref.rollout.name`` (None = vllm, verl's default); a clear error for
    an engine Seer does not support."""
    name = "vllm" if rollout_name is None else str(rollout_name)
    if name not in BACKENDS:
        raise ValueError(f"actor_rollout_ref.rollout.name={name!r} is not supported by Seer's rollout: "
                         f"one of {sorted(BACKENDS)}")
    return BACKENDS[name]


from .vllm import VLLM  # noqa: E402 - registers the vLLM backend (after register_backend exists)
