"""The engine seam: Seer reaches an engine only through its registered backend (verl's rollout name), and a
rollout engine Seer does not support is refused by name before anything starts."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from seer_verl.backends import BACKENDS, VLLM, EngineBackend, backend_of, register_backend
from seer_verl.integration.rollout_checks import validate_rollout_config


def test_vllm_is_the_registered_default_and_implements_the_protocol():
    assert backend_of(None) is VLLM is backend_of("vllm") and isinstance(VLLM, EngineBackend)
    assert set(VLLM.metrics.values()) == {"running", "waiting", "kv_usage", "preemptions", "gen_tokens"}
    with pytest.raises(ValueError, match="registered twice"):
        register_backend(type(VLLM)())
    with pytest.raises(TypeError, match="does not implement EngineBackend"):
        register_backend(object())
    assert list(BACKENDS) == ["vllm"]


def test_the_vllm_backend_reads_an_engine_the_way_verls_server_holds_it():
    class Cache:
        num_gpu_blocks, block_size = 46, 128

    class Engine:
        errored = False
        vllm_config = type("C", (), {"cache_config": Cache})

    server = type("Server", (), {"engine": Engine()})()
    assert VLLM.capacity_in_server(server) == (45 * 128, 128)  # one block is vLLM's null block
    assert VLLM.errored_in_server(server) is False
    server.engine.errored = True
    assert VLLM.errored_in_server(server) is True
    assert VLLM.errored_in_server(object()) is True  # no engine at all: dead


def test_an_unsupported_rollout_engine_is_refused_by_name():
    cfg = OmegaConf.create({"actor_rollout_ref": {"rollout": {"name": "sglang", "n": 4, "prompt_length": 64,
                                                              "response_length": 64}}, "seer": {}})
    with pytest.raises(ValueError, match=r"actor_rollout_ref.rollout.name='sglang' is not supported.*\['vllm'\]"):
        validate_rollout_config(cfg)
    cfg.actor_rollout_ref.rollout.name = "vllm"
    validate_rollout_config(cfg)
