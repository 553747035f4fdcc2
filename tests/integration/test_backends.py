"""The engine seam: Seer reaches an engine only through its registered backend (verl's rollout name), and a
rollout engine Seer does not support is refused by name before anything starts."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from seer_verl.backends import BACKENDS, VLLM, EngineBackend, backend_of, register_backend
from seer_verl.integration.rollout_checks import validate_rollout_config


def test_vllm_is_the_registered_default_and_implements_the_protocol():
    assert backend_of(None) is VLLM is backend_of("vllm") and isinstance(VLLM, EngineBackend)
    assert set(VLLM.metrics.values()) == {"running", "waiting", "kv_usage", "preemptions", "gen_tokens",
                                         "prompt_tokens", "cached_tokens"}
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


def test_engine_rpc_gives_up_when_vllm_reports_its_engine_dead():
    # an RPC sent just before the EngineCore died is never answered; rpc_in_server runs on the server actor's Ray
    # event loop, so it must not sit out its timeout (every other call to the server would wait with it)
    import asyncio
    import threading
    import time
    from types import SimpleNamespace

    from seer_verl.backends import VLLM

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    class Engine:
        errored = False
        output_handler = SimpleNamespace(get_loop=lambda: loop)

        async def collective_rpc(self, method, timeout=None, args=()):
            await asyncio.sleep(3600)

    engine = Engine()
    server = SimpleNamespace(engine=engine)
    threading.Timer(0.3, lambda: setattr(engine, "errored", True)).start()
    t = time.monotonic()
    with pytest.raises(RuntimeError, match="vLLM engine died during seer_sd_apply"):
        VLLM.rpc_in_server(server, "seer_sd_apply", (), 30.0)
    assert time.monotonic() - t < 2.0  # not the 30 s timeout
    with pytest.raises(RuntimeError, match="vLLM engine is dead; seer_sd_stats not sent"):
        VLLM.rpc_in_server(server, "seer_sd_stats", (), 30.0)
    loop.call_soon_threadsafe(loop.stop)


@pytest.mark.parametrize("flat", [False, True])
def test_the_vllm_backend_reads_a_running_requests_tokens_and_aborts_by_external_id(flat):
    """``progress_in_server`` reads vLLM's output processor the way its ``generate`` output is built: internal request
    ids under each external one, the output tokens so far, the sampled tokens' log-probs (both of vLLM's formats)."""
    import asyncio
    import threading
    from types import SimpleNamespace

    from vllm.logprobs import FlatLogprobs, Logprob

    ids = [11, 12, 13, 14, 15]
    if flat:
        lps = FlatLogprobs()
        for i, t in enumerate(ids):
            lps.append({t: Logprob(logprob=-0.1 * (i + 1), rank=1, decoded_token=None)})
    else:
        lps = [{t: Logprob(logprob=-0.1 * (i + 1))} for i, t in enumerate(ids)]
    state = SimpleNamespace(detokenizer=SimpleNamespace(output_token_ids=ids),
                            logprobs_processor=SimpleNamespace(logprobs=lps))
    aborted: list = []
    loop = asyncio.new_event_loop()  # vLLM's client loop, on its own thread
    threading.Thread(target=loop.run_forever, daemon=True).start()

    async def abort(rids):
        aborted.extend(rids)

    engine = SimpleNamespace(errored=False, abort=abort,
                             output_processor=SimpleNamespace(external_req_ids={"r1": ["r1-internal"]},
                                                              request_states={"r1-internal": state}),
                             output_handler=SimpleNamespace(get_loop=lambda: loop))
    server = SimpleNamespace(engine=engine)
    got = VLLM.progress_in_server(server, {"r1": (1, 4), "gone": (0, 2)})
    assert list(got) == ["r1"]
    n, tokens, logprobs = got["r1"]
    assert (n, tokens) == (5, [12, 13, 14]) and logprobs == pytest.approx([-0.2, -0.3, -0.4])
    assert VLLM.progress_in_server(server, {"r1": (4, 8)}) == {"r1": (5, None, None)}  # not yet at its boundary
    VLLM.abort_in_server(server, ["r1"])
    for _ in range(100):
        if aborted:
            break
        threading.Event().wait(0.01)
    assert aborted == ["r1"]
    loop.call_soon_threadsafe(loop.stop)
