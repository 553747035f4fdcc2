"""P12: without async scheduling (off for suffix speculation in vLLM 0.32) each step of an engine started for
speculation makes three worker round trips (``execute_model``, ``sample_tokens``, ``take_draft_token_ids``), each
a cross-process hand-off on verl's ``mp`` executor. The worker samples inside ``execute_model`` when no grammar
bitmask is needed and attaches its drafts to the output; the engine core applies them from there; whatever was not
attached is still fetched as vLLM does."""

from __future__ import annotations

import pickle
from types import ModuleType, SimpleNamespace

import pytest

from seer_verl.compat import cpu_platform as cp


class _Runner:
    def __init__(self, num_spec_tokens: int, use_async_scheduling: bool = False) -> None:
        self.num_spec_tokens, self.use_async_scheduling = num_spec_tokens, use_async_scheduling
        self.taken = 0

    def take_draft_token_ids(self):
        from vllm.v1.outputs import DraftTokenIds

        self.taken += 1
        return DraftTokenIds(["r0", "r1"], [[5, 6], []])


def _worker_module() -> ModuleType:
    from vllm.v1.outputs import ModelRunnerOutput

    mod = ModuleType("fake_vllm_gpu_worker")

    class Worker:
        def __init__(self, runner: _Runner) -> None:
            self.model_runner = runner

        def execute_model(self, scheduler_output):
            return None  # vLLM defers sampling to a second call, sample_tokens(grammar bitmask)

        def sample_tokens(self, grammar_output):
            return ModelRunnerOutput(req_ids=["r0", "r1"], req_id_to_index={"r0": 0, "r1": 1},
                                     sampled_token_ids=[[1], [2]])

    mod.Worker = Worker
    return mod


def test_a_speculative_synchronous_worker_sends_its_drafts_with_the_output():
    mod = _worker_module()
    cp._patch_worker_attach_drafts(mod)
    cp._patch_worker_attach_drafts(mod)  # idempotent
    spec, plain, async_spec = _Runner(8), _Runner(0), _Runner(8, use_async_scheduling=True)
    out = mod.Worker(spec).sample_tokens(None)
    # the output crosses to the engine core pickled (vLLM's shared-memory queue): the drafts go with it
    got = getattr(pickle.loads(pickle.dumps(out)), cp.DRAFTS_ATTR)
    assert got.req_ids == ["r0", "r1"] and got.draft_token_ids == [[5, 6], []] and spec.taken == 1
    for runner in (plain, async_spec):  # no speculation, or vLLM's async path (drafts stay in the worker)
        assert not hasattr(mod.Worker(runner).sample_tokens(None), cp.DRAFTS_ATTR) and runner.taken == 0


def test_a_speculative_synchronous_worker_samples_in_execute_model_unless_a_grammar_is_needed():
    mod = _worker_module()
    cp._patch_worker_attach_drafts(mod)
    free, grammar = SimpleNamespace(has_structured_output_requests=False), SimpleNamespace(
        has_structured_output_requests=True)
    spec = _Runner(8)
    out = mod.Worker(spec).execute_model(free)  # one round trip: tokens and drafts
    assert out.sampled_token_ids == [[1], [2]] and getattr(out, cp.DRAFTS_ATTR).draft_token_ids == [[5, 6], []]
    assert mod.Worker(spec).execute_model(grammar) is None  # the engine core computes a bitmask: vLLM's two calls
    for runner in (_Runner(0), _Runner(8, use_async_scheduling=True)):
        assert mod.Worker(runner).execute_model(free) is None


def _engine_modules():
    sched_mod, core_mod = ModuleType("fake_vllm_scheduler"), ModuleType("fake_vllm_engine_core")

    class Scheduler:
        def __init__(self) -> None:
            self.applied = []

        def update_from_output(self, scheduler_output, model_runner_output):
            return {"outputs": model_runner_output}

        def update_draft_token_ids(self, drafts) -> None:
            self.applied.append(drafts)

    class Executor:
        def __init__(self) -> None:
            self.rpcs = 0

        def take_draft_token_ids(self):
            self.rpcs += 1
            return "fetched"

    class EngineCore:  # vLLM 0.32's post_step, verbatim in substance
        def __init__(self, async_scheduling: bool = False) -> None:
            self.scheduler, self.model_executor = Scheduler(), Executor()
            self.check_for_draft_tokens, self.async_scheduling = True, async_scheduling

        def post_step(self, model_executed: bool) -> None:
            if self.check_for_draft_tokens and not self.async_scheduling and model_executed:
                d = self.model_executor.take_draft_token_ids()
                if d is not None:
                    self.scheduler.update_draft_token_ids(d)

    sched_mod.Scheduler, core_mod.EngineCore = Scheduler, EngineCore
    for _ in range(2):  # idempotent
        cp._patch_scheduler_keeps_attached_drafts(sched_mod)
        cp._patch_engine_core_drafts_from_output(core_mod)
    return core_mod


def test_the_engine_core_applies_attached_drafts_without_asking_the_worker():
    core = _engine_modules().EngineCore()
    attached = SimpleNamespace(**{cp.DRAFTS_ATTR: "attached"})
    for _ in range(3):
        core.scheduler.update_from_output(None, attached)
        core.post_step(True)
    assert core.scheduler.applied == ["attached"] * 3 and core.model_executor.rpcs == 0
    # a step whose output carried "no drafts" (None) applies none, and asks nobody
    core.scheduler.update_from_output(None, SimpleNamespace(**{cp.DRAFTS_ATTR: None}))
    core.post_step(True)
    assert core.scheduler.applied == ["attached"] * 3 and core.model_executor.rpcs == 0
    # an output without the attribute (an unpatched worker, an output from execute_model): vLLM's round trip
    core.scheduler.update_from_output(None, SimpleNamespace())
    core.post_step(True)
    assert core.scheduler.applied[-1] == "fetched" and core.model_executor.rpcs == 1
    # a step after which nothing was consumed falls back too, and the attachment is used once only
    core.post_step(True)
    assert core.model_executor.rpcs == 2


def test_vllms_engine_core_and_worker_are_patched_when_the_plugin_is_active(cpu_environment):
    if not cp.ACTIVE:
        pytest.skip("CPU plugin inactive (VERL_PLATFORM != cpu)")
    cp.vllm_plugin()
    import inspect

    from vllm.v1.core.sched import scheduler
    from vllm.v1.engine import core
    from vllm.v1.worker import gpu_worker

    for fn in (scheduler.Scheduler.update_from_output, core.EngineCore.post_step, gpu_worker.Worker.sample_tokens,
               gpu_worker.Worker.execute_model):
        assert getattr(fn, "__seer_patched__", False), fn
    # what the patch replaces is still vLLM's post-step round trip in this version
    src = inspect.getsource(core.EngineCore.post_step.__seer_orig__)
    assert "take_draft_token_ids()" in src and "update_draft_token_ids" in src
    # and the engine core still takes a step's output from execute_model when it brings one
    assert "if model_output is None:" in inspect.getsource(core.EngineCore.step)
