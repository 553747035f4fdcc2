"""Streamed chunks (``seer.stream_chunks``) on the Seer service with in-process fake engines (see
``test_service_faults``): one engine call runs a request's chunks while it continues on its engine; the service reads
each boundary from the engine and cuts the call when the request waits or moves. Every sample must still come back
exactly once with the tokens of an uninterrupted generation (the fake model is deterministic in the whole context,
so a wrong offset, a token read twice or a chunk resumed from the wrong prefix changes them)."""

from __future__ import annotations

import asyncio

import pytest
from test_service_faults import greedy, make_service, prompts_for, run_batch

import seer_verl.integration.service as service_mod

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch):
    monkeypatch.setattr(service_mod, "STREAM_POLL_S", 0.01)


def _run(svc, prompts, groups, max_tokens, during=None):
    return asyncio.run(run_batch(svc, prompts, groups, max_tokens=max_tokens, during=during))


def _check(results, prompts, max_tokens):
    for i, (p, r) in enumerate(zip(prompts, results)):
        assert not isinstance(r, BaseException), f"row {i}: {r!r}"
        assert r["token_ids"] == greedy(p, max_tokens), f"row {i}"
        assert len(r["log_probs"]) == len(r["token_ids"])


@pytest.mark.parametrize("tok_s", [0.002, 0.0002])  # polls that see every boundary / calls that race past them
def test_streamed_chunks_give_the_uninterrupted_tokens_with_fewer_engine_calls(tok_s):
    prompts = prompts_for(12, seed=5)
    groups = [i // 4 for i in range(12)]
    runs = {}
    for stream in (False, True):
        svc, engines = make_service(n_engines=2, chunk_size=6, tok_s=tok_s, stream_chunks=stream)
        results, last, _ = _run(svc, prompts, groups, 40)
        _check(results, prompts, 40)
        runs[stream] = (last, sum(e.calls for e in engines))
    plain, streamed = runs[False], runs[True]
    assert plain[0]["engine_calls"] == plain[1] == plain[0]["metrics"]["dispatches"]  # one call per chunk
    # the same chunks, as the controller sees them; far fewer engine calls
    assert streamed[0]["metrics"]["chunks_completed"] >= 12 + 12 and streamed[0]["engine_calls"] == streamed[1]
    assert streamed[1] < streamed[0]["metrics"]["chunks_completed"] // 2
    assert streamed[0]["records"].keys() == plain[0]["records"].keys()


def test_a_request_that_waits_or_moves_is_cut_and_resumes_exactly():
    # KV for ~3 requests per engine: requests wait at their boundaries, continuations move in the tail
    prompts = prompts_for(16, seed=9, plen=(20, 40))
    groups = [i // 4 for i in range(16)]
    svc, engines = make_service(n_engines=2, chunk_size=8, capacity=192, tok_s=0.001, stream_chunks=True)
    results, last, _ = _run(svc, prompts, groups, 48)
    _check(results, prompts, 48)
    assert last["stream_cuts"] > 0
    assert sum(e.calls for e in engines) == last["engine_calls"] < last["metrics"]["dispatches"]
    # every cut reached its engine, which stopped generating for it
    assert sum(len(e.aborted) for e in engines) == last["stream_cuts"]


def test_streamed_requests_resume_exactly_after_an_engine_dies():
    prompts = prompts_for(12, seed=2)
    groups = [i // 3 for i in range(12)]
    svc, engines = make_service(n_engines=3, chunk_size=5, tok_s=0.01, stream_chunks=True)

    async def kill(svc, tasks):
        await asyncio.sleep(0.15)  # calls of 40 tokens take 0.4 s
        engines[1].kill("core_dead")

    results, last, _ = _run(svc, prompts, groups, 40, during=kill)
    _check(results, prompts, 40)
    assert [f["engine"] for f in last["engine_failures"]] == [1]


def test_stream_chunks_must_be_a_bool():
    with pytest.raises(ValueError, match="seer.stream_chunks must be true or false"):
        make_service(stream_chunks="yes")
