"""verl's trainer past a lost rollout replica: sleep, wake and weight sync on the survivors only.

verl 0.9.1's DataProto trainer, hybrid mode (each vLLM server fed by its own FSDP ranks), fails right after a batch in
which Seer lost an engine: ``sleep_replicas`` raises on a dead server actor, and the weight sync hangs on a rank whose
engine is gone (docs/reliability.md). Two of verl's own extension points fix that without forking it:

    +actor_rollout_ref.rollout.checkpoint_manager_class=seer_verl.integration.weight_sync.SeerCheckpointEngineManager
    actor_rollout_ref.rollout.checkpoint_engine.custom_backend_module=seer_verl.integration.weight_sync

(``configs/seer.yaml`` sets both.) :class:`SeerCheckpointEngineManager` probes each replica's server once per call
and leaves lost ones out of sleep / wake / abort; its weight sync calls every FSDP rank, each with its own mode:
``naive`` (push into its own engine, verl's path) where the replica is alive, ``seer_drain`` where it is lost. A
draining rank (:class:`DrainCheckpointEngine`) walks the same weight generator to the end and drops the tensors, so
it takes part in every FSDP all-gather and no rank waits for it. A lost replica stays lost for the run (its weights
go stale); Seer's service already schedules the next batches on the survivors. With every replica alive this is
verl's own naive sync, call for call.

Not covered (verl would have to change): a replica lost *during* the sync (verl's ZMQ weight push has no timeout),
an FSDP rank lost, rebuilding a replica, and verl's V1 trainer (it builds its own manager, no class hook).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import ray
from verl.checkpoint_engine import CheckpointEngineManager
from verl.checkpoint_engine.base import CheckpointEngine, CheckpointEngineRegistry
from verl.utils.ray_utils import auto_await

from seer_verl.integration.engines import lost_reason

__all__ = ["DRAIN", "DrainCheckpointEngine", "SeerCheckpointEngineManager"]

logger = logging.getLogger(__name__)

#: the checkpoint-engine backend of a rank whose replica is lost
DRAIN = "seer_drain"


@CheckpointEngineRegistry.register(DRAIN)
class DrainCheckpointEngine(CheckpointEngine):
    """Consumes the actor's weight generator (the FSDP all-gathers run) and sends nothing."""

    def __init__(self, bucket_size: int = 0, is_master: bool = False, **_: Any) -> None:
        self.bucket_size, self.is_master = bucket_size, is_master
        self.drained = 0  # tensors walked at the last sync (for tests and logs)

    def prepare(self) -> dict[str, Any]:
        return {}

    @classmethod
    def build_topology(cls, trainer_world_size: int, rollout_world_size: int, metadata: list) -> tuple[dict, dict]:
        return {}, {}

    def init_process_group(self, **kwargs: Any) -> None:
        return None

    def finalize(self) -> None:
        return None

    async def send_weights(self, weights: Any, global_steps: int | None = None) -> dict[str, float]:
        n = 0
        for _name, _tensor in weights:  # each step may be a collective on every FSDP rank: never stop early
            n += 1
        self.drained = n
        return {}

    async def receive_weights(self, global_steps: int | None = None) -> Any:
        raise RuntimeError(f"the {DRAIN!r} checkpoint engine only drains an actor's weights; it receives none")


class SeerCheckpointEngineManager(CheckpointEngineManager):
    """verl's ``CheckpointEngineManager`` that skips rollout replicas whose engine is lost (see the module doc)."""

    probe_timeout_s = 10.0

    def __init__(self, config: Any, actor_wg: Any, replicas: list[Any]) -> None:
        super().__init__(config, actor_wg, replicas)
        self.lost: dict[int, str] = {}  # replica index -> why; a lost replica stays lost

    async def _refresh_lost(self) -> list[Any]:
        """Probe the replicas not yet known lost; returns the live ones."""
        todo = [i for i in range(len(self.replicas)) if i not in self.lost]
        found = await asyncio.gather(*[
            _lost_replica(self.replicas[i], self.probe_timeout_s) for i in todo])
        for i, why in zip(todo, found):
            if why is not None:
                self.lost[i] = why
                logger.warning("Seer: rollout replica %d is lost (%s): left out of sleep, wake-up and weight sync "
                               "from now on", i, why)
        return [r for i, r in enumerate(self.replicas) if i not in self.lost]

    async def _on_live(self, method: str, **kwargs: Any) -> None:
        live = await self._refresh_lost()
        await asyncio.gather(*[getattr(r, method)(**kwargs) for r in live])

    # every replica-wide call of verl's manager, on the live replicas only (auto_await: verl's trainer calls them
    # plainly, like the methods they replace)
    @auto_await
    async def sleep_replicas(self) -> None:  # type: ignore[override]
        await self._on_live("sleep")

    @auto_await
    async def wake_up_replicas(self) -> None:  # type: ignore[override]
        await self._on_live("wake_up")

    @auto_await
    async def abort_replicas(self, reject_request: bool = False) -> None:  # type: ignore[override]
        await self._on_live("abort_all_requests", reject_request=reject_request)

    @auto_await
    async def resume_generation_replicas(self) -> None:  # type: ignore[override]
        await self._on_live("resume_generation")

    @auto_await
    async def release_kv_cache_replicas(self) -> None:  # type: ignore[override]
        await self._on_live("release_kv_cache")

    @auto_await
    async def resume_kv_cache_replicas(self) -> None:  # type: ignore[override]
        await self._on_live("resume_kv_cache")

    @auto_await
    async def update_weights(self, global_steps: int | None = None) -> dict:  # type: ignore[override]
        if self.backend not in ("naive", DRAIN):
            raise ValueError(f"actor_rollout_ref.rollout.checkpoint_engine.backend={self.backend!r} is not allowed "
                             f"with {type(self).__name__}: naive (colocated weight sync) or {DRAIN}")
        await self._refresh_lost()
        if not self.lost:  # verl's own naive sync
            await asyncio.to_thread(ray.get, self.actor_wg.update_weights(global_steps=global_steps, mode="naive"))
            return {}
        if self.backend != DRAIN:  # the lost replica's ranks would not join the all-gathers: the others would hang
            raise RuntimeError(f"rollout replicas {sorted(self.lost)} are lost and actor_rollout_ref.rollout."
                               f"checkpoint_engine.backend={self.backend!r}: the weight sync can skip them only with "
                               f"backend={DRAIN} (configs/seer.yaml sets it)")
        modes = rank_modes(self.actor_wg.workers, [r.workers for r in self.replicas], set(self.lost))
        refs = self.actor_wg.execute_all_async(_update_weights_method(self.actor_wg),
                                               global_steps=[global_steps] * len(modes), mode=modes)
        await asyncio.to_thread(ray.get, refs)
        return {"seer/replicas_alive": float(len(self.replicas) - len(self.lost))}


async def _lost_replica(replica: Any, timeout_s: float) -> str | None:
    servers = list(getattr(replica, "servers", []) or [])
    for s in servers:
        why = await lost_reason(s, timeout_s)
        if why is not None:
            return why
    return None


def rank_modes(rank_workers: list[Any], replica_workers: list[list[Any]], lost: set[int]) -> list[str]:
    """Each FSDP rank's sync mode: ``naive`` if the replica it feeds is alive, :data:`DRAIN` if it is lost.
    Ranks are matched to replicas by their Ray actor."""
    def key(w: Any) -> Any:
        return getattr(w, "_actor_id", w)

    owner = {key(w): i for i, ws in enumerate(replica_workers) for w in ws}
    missing = [r for r, w in enumerate(rank_workers) if key(w) not in owner]
    if missing:
        raise RuntimeError(f"FSDP ranks {missing} feed no rollout replica: not verl's hybrid layout")
    return [DRAIN if owner[key(w)] in lost else "naive" for w in rank_workers]


def _update_weights_method(actor_wg: Any) -> str:
    """The worker-side name of ``update_weights``: verl binds a fused worker's methods under ``<role>_<name>`` and
    re-binds the role's own under the plain name; the prefixed name is what the workers answer to."""
    plain = getattr(actor_wg, "update_weights")
    for m in dir(actor_wg):
        if m.endswith("_update_weights") and not m.startswith("_") and getattr(actor_wg, m) is plain:
            return m
    return "update_weights"
