"""The pieces of Seer's weight sync past a lost replica (seer_verl/integration/weight_sync.py) that need no trainer:
the draining checkpoint engine walks the whole weight stream, each FSDP rank gets the mode of the replica it feeds,
and the manager leaves lost replicas out of every replica-wide call. The trainer run that loses an engine and goes
on is tests/integration/test_grpo_trainer.py (grpo_seer)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from seer_verl.integration.weight_sync import (
    DRAIN,
    DrainCheckpointEngine,
    SeerCheckpointEngineManager,
    _update_weights_method,
    rank_modes,
)


def test_drain_walks_the_whole_weight_stream():
    seen = []

    def weights():
        for i in range(7):
            seen.append(i)  # on a real rank each step is an FSDP all-gather every rank must join
            yield f"w{i}", i

    engine = DrainCheckpointEngine(bucket_size=1, is_master=True)
    assert asyncio.run(engine.send_weights(weights(), global_steps=3)) == {}
    assert seen == list(range(7)) and engine.drained == 7


def test_each_rank_gets_the_mode_of_its_replica():
    ranks = [SimpleNamespace(_actor_id=i) for i in range(4)]
    replicas = [[ranks[0], ranks[1]], [ranks[2], ranks[3]]]
    assert rank_modes(ranks, replicas, set()) == ["naive"] * 4
    assert rank_modes(ranks, replicas, {1}) == ["naive", "naive", DRAIN, DRAIN]
    with pytest.raises(RuntimeError, match=r"FSDP ranks \[3\] feed no rollout replica"):
        rank_modes(ranks, replicas[:1] + [[ranks[2]]], set())


def test_the_prefixed_worker_method_is_found():
    def fn(**_):
        return None

    wg = SimpleNamespace(actor_rollout_update_weights=fn, update_weights=fn, ref_compute=lambda: None)
    assert _update_weights_method(wg) == "actor_rollout_update_weights"
    assert _update_weights_method(SimpleNamespace(update_weights=fn)) == "update_weights"


class _Server:
    """A server actor seen through ``__ray_call__``: alive, core dead, or actor dead."""

    def __init__(self, state: str) -> None:
        self.state = state
        self.engine = SimpleNamespace(errored=state == "core_dead")
        self.__ray_call__ = SimpleNamespace(remote=self._call)

    async def _call(self, fn):
        if self.state == "actor_dead":
            from ray.exceptions import ActorDiedError

            raise ActorDiedError()
        return fn(self)


class _Replica:
    def __init__(self, state: str) -> None:
        self.servers = [_Server(state)]
        self.calls: list[str] = []

    async def sleep(self):
        self.calls.append("sleep")

    async def wake_up(self):
        self.calls.append("wake_up")


def test_lost_replicas_are_left_out_and_stay_lost():
    replicas = [_Replica("ok"), _Replica("core_dead"), _Replica("actor_dead")]
    m = SeerCheckpointEngineManager.__new__(SeerCheckpointEngineManager)  # no verl config needed for these calls
    m.replicas, m.lost = replicas, {}

    async def run():
        await m.sleep_replicas()
        replicas[1].servers[0].engine.errored = False  # a lost replica stays lost (its weights are stale)
        await m.wake_up_replicas()

    asyncio.run(run())
    assert replicas[0].calls == ["sleep", "wake_up"] and replicas[1].calls == [] and replicas[2].calls == []
    assert set(m.lost) == {1, 2}
    assert "core dead" in m.lost[1] and "server actor died" in m.lost[2]


def test_a_loss_with_the_naive_backend_is_a_clear_error_not_a_hang():
    # with backend=naive a lost replica's FSDP ranks have no draining engine: they would skip the all-gathers
    m = SeerCheckpointEngineManager.__new__(SeerCheckpointEngineManager)
    m.replicas, m.lost, m.backend = [_Replica("ok"), _Replica("actor_dead")], {}, "naive"
    with pytest.raises(RuntimeError, match=r"rollout replicas \[1\] are lost and .*backend='naive'"):
        asyncio.run(m.update_weights(3))
