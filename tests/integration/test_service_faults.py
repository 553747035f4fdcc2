"""Fault injection on the Seer rollout service with in-process fake engines (fast: no Ray, no vLLM).

A fake engine behaves like verl's vLLM server actor seen from the service: ``generate.remote(...)`` is awaited and
returns a ``TokenOutput``-like object; ``__ray_call__.remote(fn)`` runs ``fn`` on the server (the service's health
check reads ``server.engine.errored``). Its "model" is greedy and deterministic: the next token is a function of the
whole context, so a sample resumed on another engine gives exactly the tokens of an uninterrupted run only if the
service resumed it from exactly the right prefix.

Faults: the server actor dies (calls raise ``ActorDiedError``), vLLM's engine core dies (calls raise; the server
reports ``errored``), the engine hangs (calls never return), a request is rejected by a healthy engine.
"""

from __future__ import annotations

import asyncio
import random
import time
import zlib
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ray.exceptions import ActorDiedError

from seer_verl.backends import BACKENDS, register_backend
from seer_verl.integration.service import EngineInfo, EngineLossError, SampleError, SeerRolloutService

pytestmark = pytest.mark.timeout(300)

EOS = 2
BAD_TOKEN = 999_999  # a prompt containing it is rejected by the engine (a healthy engine's per-request error)


def next_token(ctx: list[int]) -> int:
    h = zlib.crc32(repr((ctx[-4:], len(ctx))).encode())
    return EOS if h % 29 == 0 else 3 + h % 5000


def greedy(prompt: list[int], max_tokens: int) -> list[int]:
    ctx, out = list(prompt), []
    for _ in range(max_tokens):
        t = next_token(ctx)
        out.append(t)
        ctx.append(t)
        if t == EOS:
            break
    return out


class _Remote:
    def __init__(self, fn):
        self._fn = fn

    def remote(self, *args, **kwargs):
        return self._fn(*args, **kwargs)


class FakeEngine:
    """``state``: ok | actor_dead | core_dead | core_exited | hung. ``core_exited`` is what vLLM does when its
    EngineCore process is killed: the engine reports itself dead, but the calls in flight never return."""

    def __init__(self, name: str, tok_s: float = 0.001) -> None:
        self.name = name
        self.tok_s = tok_s
        self.state = "ok"
        self.calls = 0
        self.running = 0
        self.completed = 0
        self.budgets: list[int] = []  # max_tokens of every call
        self.live: dict[str, list[int]] = {}  # request id -> its output so far, while its call runs
        self.aborted: set[str] = set()
        self.engine = SimpleNamespace(errored=False)
        self.generate = _Remote(self._generate)
        self.__ray_call__ = _Remote(self._ray_call)

    def kill(self, how: str = "actor_dead") -> None:
        self.state = how
        if how in ("core_dead", "core_exited"):
            self.engine.errored = True

    def _check(self) -> None:
        if self.state == "actor_dead":
            raise ActorDiedError()
        if self.state == "core_dead":
            raise RuntimeError("vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue")

    async def _generate(self, prompt_ids, sampling_params, request_id, priority=0):
        self.calls += 1
        self.budgets.append(sampling_params["max_tokens"])
        self.running += 1
        try:
            self._check()
            if BAD_TOKEN in prompt_ids:
                raise ValueError("prompt contains an invalid token id")
            ctx, out = list(prompt_ids), []
            self.live[request_id] = out
            for _ in range(sampling_params["max_tokens"]):
                await asyncio.sleep(self.tok_s)
                if request_id in self.aborted:
                    return SimpleNamespace(token_ids=out, log_probs=[-0.25] * len(out), stop_reason="aborted",
                                           extra_fields={"global_steps": 3})
                if self.state in ("hung", "core_exited"):
                    await asyncio.Event().wait()
                self._check()
                t = next_token(ctx)
                out.append(t)
                ctx.append(t)
                if t == EOS:
                    break
            self.completed += 1
            return SimpleNamespace(token_ids=out, log_probs=[-0.25] * len(out), stop_reason="completed",
                                   extra_fields={"global_steps": 3})
        finally:
            self.running -= 1
            self.live.pop(request_id, None)

    async def _ray_call(self, fn, *args):
        if self.state == "actor_dead":
            raise ActorDiedError()
        if self.state == "hung":
            await asyncio.Event().wait()
        return fn(self, *args)


class FakeBackend:
    """The engine seam for :class:`FakeEngine` (``backend="fake"``): its progress reads and aborts."""

    name = "fake"
    metrics: dict = {}
    engine_kwargs_key = "fake"

    def capacity_in_server(self, server):
        return 4096, 16

    def errored_in_server(self, server):
        return bool(server.engine.errored)

    def rpc_in_server(self, server, method, args, timeout):
        raise NotImplementedError

    def progress_in_server(self, server, wanted):
        out = {}
        for rid, (lo, hi) in wanted.items():
            got = server.live.get(rid)
            if got is not None:
                n = len(got)
                out[rid] = (n, list(got[lo:hi]), [-0.25] * (hi - lo)) if n >= hi else (n, None, None)
        return out

    def abort_in_server(self, server, request_ids):
        server.aborted.update(request_ids)



def make_service(n_engines=3, chunk_size=8, capacity=4096, tok_s=0.001, **seer):
    engines = [FakeEngine(f"10.0.0.{i}:800{i}", tok_s) for i in range(n_engines)]
    register_backend(FakeBackend())  # for this service only: the registry lists the real engines
    try:
        svc = SeerRolloutService(
            {e.name: e for e in engines},
            [EngineInfo(e.name, capacity, 16) for e in engines],
            {"chunk_size": chunk_size, "chunk_align": 0, **seer},
            [EOS],
            max_inflight_per_engine=8,
            backend="fake",
        )
    finally:
        BACKENDS.pop("fake", None)
    return svc, engines


def prompts_for(n, seed=0, plen=(5, 30)):
    rng = random.Random(seed)
    return [[rng.randint(3, 5000) for _ in range(rng.randint(*plen))] for _ in range(n)]


async def run_batch(svc, prompts, groups, max_tokens=40, during=None):
    """One batch as verl's agent loops drive it: one concurrent generate per row. ``during(svc, tasks)`` runs
    alongside (the fault injector). Returns (per-row result or exception, end_batch result or exception, s)."""
    svc.begin_batch(groups, prompt_length=64, response_length=max_tokens, max_model_len=64 + max_tokens)
    t0 = time.time()
    tasks = [asyncio.create_task(svc.generate(i, p, {"logprobs": True, "temperature": 1.0}))
             for i, p in enumerate(prompts)]
    side = asyncio.create_task(during(svc, tasks)) if during else None
    results = await asyncio.gather(*tasks, return_exceptions=True)
    if side is not None:
        side.cancel()
    try:
        last = await svc.end_batch()
    except Exception as exc:  # noqa: BLE001
        last = exc
    return results, last, time.time() - t0


def assert_exact(results, prompts, max_tokens=40):
    for i, (res, p) in enumerate(zip(results, prompts)):
        assert not isinstance(res, BaseException), f"row {i}: {res!r}"
        assert res["token_ids"] == greedy(p, max_tokens), f"row {i}: tokens differ from an uninterrupted run"
        assert len(res["log_probs"]) == len(res["token_ids"])


def test_null_chunk_size_is_an_eighth_of_the_batch_response_length():
    svc, engines = make_service(n_engines=2, chunk_size=None)
    prompts = prompts_for(8, seed=3)
    results, last, _ = asyncio.run(run_batch(svc, prompts, [i // 4 for i in range(8)], max_tokens=256))
    assert_exact(results, prompts, max_tokens=256)
    budgets = [b for e in engines for b in e.budgets]
    assert max(budgets) == 32 and not isinstance(last, BaseException)  # auto_chunk_size(256) = 32
    assert last["chunk_size"] == 32 and svc._chunk_timeout_s == 120 + 2 * 32


def kill_when(engine: FakeEngine, cond, how="actor_dead"):
    async def during(svc, tasks):
        while not cond(tasks):
            await asyncio.sleep(0.0005)
        engine.kill(how)

    return during


def finished(tasks):
    return sum(t.done() for t in tasks)


@pytest.mark.parametrize(
    "phase, how",
    [("early", "actor_dead"), ("mid", "core_dead"), ("tail", "actor_dead"), ("mid", "hung")],
)
def test_engine_lost_mid_batch_every_sample_once_in_order_exact_tokens(phase, how):
    n = 24
    svc, engines = make_service(chunk_timeout_s=0.3, health_timeout_s=0.2)
    prompts = prompts_for(n)
    killed: list[FakeEngine] = []
    left = {"early": n, "mid": n // 2, "tail": 8}[phase]  # unfinished samples when the engine is lost

    async def during(svc, tasks):
        while not (n - finished(tasks) <= left and any(e.running for e in engines)):
            await asyncio.sleep(0.0005)
        victim = max(engines, key=lambda e: e.running)  # an engine with chunks in flight
        victim.kill(how)
        killed.append(victim)

    results, last, wall = asyncio.run(run_batch(svc, prompts, [i // 4 for i in range(n)], during=during))
    assert_exact(results, prompts)
    (victim,) = killed
    vid = engines.index(victim)
    m = last["metrics"]
    assert m["engine_failures"] == 1 and m["requests_redispatched"] >= 1
    assert m["requests_redispatched"] == m["chunks_discarded"] == sum(len(v) for v in last["lost_chunks"].values())
    (ev,) = last["engine_failures"]
    assert ev["engine"] == vid and ev["address"] == victim.name
    assert sorted(ev["requeued_rows"]) == sorted(last["lost_chunks"])
    assert {"actor_dead": "server actor died", "core_dead": "engine core dead",
            "hung": "no answer to a chunk within seer.chunk_timeout_s=0.3s"}[how] in ev["reason"]
    assert last["engines_alive"] == 2
    # no completed chunk ran on the lost engine after it was declared lost
    t_fail = min(t for iv in last["lost_chunks"].values() for _, _, t in iv)
    assert all(e != vid or t1 <= t_fail + 1e-3 for iv in last["records"].values() for e, _, t1 in iv)
    assert svc.engine_status()["dead"] == {victim.name: ev["reason"]}


def test_engine_core_that_exits_silently_is_found_by_the_liveness_probe_not_the_chunk_timeout():
    # vLLM after its EngineCore is SIGKILLed (seen on the real engines): errored=True, calls in flight hang
    from seer_verl.integration.service import LIVENESS_PROBE_S

    n = 24
    svc, engines = make_service(chunk_timeout_s=60.0, health_timeout_s=1.0)
    prompts = prompts_for(n)
    killed: list[float] = []

    async def during(svc, tasks):
        while not (finished(tasks) >= n // 3 and any(e.running for e in engines)):
            await asyncio.sleep(0.0005)
        max(engines, key=lambda e: e.running).kill("core_exited")
        killed.append(time.time())

    results, last, wall = asyncio.run(run_batch(svc, prompts, [i // 4 for i in range(n)], during=during))
    assert_exact(results, prompts)
    (ev,) = last["engine_failures"]
    assert "engine core dead while a chunk ran" in ev["reason"], ev["reason"]
    assert ev["time"] - killed[0] <= 2 * LIVENESS_PROBE_S + 1.0  # not the 60 s chunk timeout
    assert wall < 20.0 and last["engines_alive"] == 2


def test_lost_engine_is_not_used_by_later_batches():
    svc, engines = make_service()
    prompts = prompts_for(12, seed=1)
    groups = [i // 4 for i in range(12)]
    results, last, _ = asyncio.run(run_batch(svc, prompts, groups,
                                             during=kill_when(engines[0], lambda t: engines[0].running > 0)))
    assert_exact(results, prompts)
    calls = engines[0].calls
    results, last, _ = asyncio.run(run_batch(svc, prompts, groups))
    assert_exact(results, prompts)
    assert engines[0].calls == calls  # never dispatched to again
    assert last["metrics"]["engine_failures"] == 0 and last["engines_alive"] == 2


@pytest.mark.parametrize("how", ["actor_dead", "core_dead", "hung"])
def test_all_engines_lost_raises_a_clear_error_naming_them_within_bounded_time(how):
    svc, engines = make_service(n_engines=2, chunk_timeout_s=0.5, health_timeout_s=0.2)
    prompts = prompts_for(16, seed=2)

    async def kill_all(svc, tasks):
        while finished(tasks) < 4:
            await asyncio.sleep(0.0005)
        for e in engines:
            e.kill(how)

    results, last, wall = asyncio.run(run_batch(svc, prompts, [i // 4 for i in range(16)], during=kill_all))
    assert isinstance(last, EngineLossError)
    msg = str(last)
    assert "2 of 2 rollout engines lost" in msg and all(e.name in msg for e in engines) and "alive: none" in msg
    assert wall < 5.0  # detection is bounded (hung: chunk_timeout_s 0.5 s)
    done = [r for r in results if not isinstance(r, BaseException)]
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(done) >= 4 and failed and all(isinstance(r, EngineLossError) for r in failed)
    # the next batch fails at once with the same clear error (no engine left), and nobody hangs
    results, last, wall = asyncio.run(run_batch(svc, prompts[:4], [0, 0, 0, 0]))
    assert isinstance(last, EngineLossError) and "no rollout engine is alive" in str(last) and wall < 1.0
    assert all(isinstance(r, EngineLossError) for r in results)


def test_a_sample_rejected_by_a_healthy_engine_fails_the_batch_naming_its_row_and_keeps_the_engine():
    svc, engines = make_service(n_engines=2)
    prompts = prompts_for(8, seed=3)
    prompts[5] = prompts[5] + [BAD_TOKEN]
    results, last, _ = asyncio.run(run_batch(svc, prompts, [i // 4 for i in range(8)]))
    assert isinstance(last, SampleError)
    assert "row 5: chunk 0 failed on healthy engine" in str(last) and "invalid token id" in str(last)
    assert all(isinstance(r, SampleError) for r in results if isinstance(r, BaseException))
    assert svc.engine_status()["dead"] == {}
    prompts[5] = prompts[5][:-1]
    results, last, _ = asyncio.run(run_batch(svc, prompts, [i // 4 for i in range(8)]))
    assert_exact(results, prompts)


@pytest.mark.parametrize("bad, message", [
    ([], r"row 3: empty prompt \(0 tokens\)"),
    (list(range(3, 3 + 64 + 40)), r"row 3: prompt of 104 tokens leaves no room to generate within max_model_len=104"),
])
def test_unusable_prompt_fails_the_batch_at_once_naming_the_row(bad, message):
    svc, engines = make_service(n_engines=2)
    prompts = prompts_for(8, seed=4)
    prompts[3] = bad
    results, last, wall = asyncio.run(run_batch(svc, prompts, [i // 4 for i in range(8)]))
    assert isinstance(last, SampleError) and wall < 2.0
    assert isinstance(results[3], SampleError)
    import re

    assert re.search(message, str(results[3]))
    assert sum(e.calls for e in engines) == 0  # nothing ran: the batch failed before dispatch
    results, last, _ = asyncio.run(run_batch(svc, prompts_for(8, seed=4), [i // 4 for i in range(8)]))
    assert not isinstance(last, BaseException)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    n=st.integers(1, 24),
    chunk=st.integers(1, 16),
    max_tokens=st.integers(1, 40),
    n_engines=st.integers(2, 4),
    kills=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 24), st.sampled_from(["actor_dead", "core_dead"])),
                   min_size=1, max_size=4),
    policy=st.sampled_from(["seer", "divided"]),
    seed=st.integers(0, 1000),
)
def test_random_engine_losses_on_the_service(n, chunk, max_tokens, n_engines, kills, policy, seed):
    svc, engines = make_service(n_engines=n_engines, chunk_size=chunk, policy=policy, health_timeout_s=0.2)
    prompts = prompts_for(n, seed=seed)

    async def injector(svc, tasks):
        for eng, after, how in sorted(kills, key=lambda k: k[1]):
            while finished(tasks) < min(after, n - 1):
                await asyncio.sleep(0.0005)
            engines[eng % n_engines].kill(how)

    results, last, wall = asyncio.run(run_batch(svc, prompts, [i // 3 for i in range(n)], max_tokens, injector))
    lost = {e.name for e in engines if e.state != "ok"}
    if isinstance(last, EngineLossError):  # every engine went before the batch could finish
        assert len(lost) == n_engines and all(name in str(last) for name in lost)
        assert all(isinstance(r, EngineLossError) for r in results if isinstance(r, BaseException))
        good = [i for i, r in enumerate(results) if not isinstance(r, BaseException)]
        assert_exact([results[i] for i in good], [prompts[i] for i in good], max_tokens)
        return
    assert not isinstance(last, BaseException), last
    assert_exact(results, prompts, max_tokens)
    m = last["metrics"]
    assert m["engine_failures"] == len(last["engine_failures"]) <= len(lost)
    assert m["requests_redispatched"] == sum(len(v) for v in last["lost_chunks"].values())
    assert m["requests_finished"] == n
