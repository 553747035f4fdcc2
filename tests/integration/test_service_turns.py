"""Multi-turn agents and rows that come late or never, on the Seer service with in-process fake engines.

verl's ``tool_agent`` calls ``generate`` once per turn with the conversation so far; other agent loops may skip a
sample. The service must answer every call exactly once with the tokens an uninterrupted generation from that
prompt gives, never wait for a row that does not come (``seer.admission_wait_s``), let later turns join the running
rollout, and reject a second concurrent call for one row. Fake engines: see ``test_service_faults``.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_service_faults import greedy, make_service, prompts_for

pytestmark = pytest.mark.timeout(300)

SP = {"logprobs": True, "temperature": 1.0}


def tool_tokens(row: int, turn: int) -> list[int]:
    """The deterministic 'tool response' appended after a turn (a local tool: no network)."""
    return [4000 + row, 4100 + turn, 4200 + (row * 7 + turn) % 50]


async def agent(svc, row, prompt, turns, max_tokens, delay=0.0, budget_left=None):
    """A tool agent: ``turns`` generate calls; after each, the tool's response joins the conversation."""
    await asyncio.sleep(delay)
    conversation, outs = list(prompt), []
    for turn in range(turns):
        out = await svc.generate(row, conversation, {**SP, "max_tokens": max_tokens})
        outs.append((list(conversation), out["token_ids"]))
        conversation += out["token_ids"] + tool_tokens(row, turn)
        await asyncio.sleep(0.001 * ((row + turn) % 3))  # the tool takes a moment
    return outs


def check_turns(outs, max_tokens):
    for conversation, tokens in outs:
        assert tokens == greedy(conversation, max_tokens)


def test_every_turn_of_every_sample_is_answered_exactly_with_its_conversation():
    svc, _ = make_service(n_engines=2, chunk_size=5, admission_wait_s=0.5)
    prompts = prompts_for(6, seed=3)
    turns = [1, 3, 2, 4, 1, 2]

    async def main():
        svc.begin_batch([0, 0, 1, 1, 2, 2], prompt_length=64, response_length=40, max_model_len=400)
        outs = await asyncio.gather(*(agent(svc, i, p, turns[i], 12) for i, p in enumerate(prompts)))
        return outs, await svc.end_batch()

    outs, last = asyncio.run(main())
    for i, o in enumerate(outs):
        assert len(o) == turns[i]
        check_turns(o, 12)
    assert last["requests"] == sum(turns) and last["rows"] == 6 and last["late_rows"] == 0
    assert last["metrics"]["requests_finished"] == sum(turns)
    assert sorted(last["records"]) == list(range(6))


def test_a_row_that_never_calls_does_not_hold_the_batch():
    wait = 0.3
    svc, _ = make_service(n_engines=2, chunk_size=8, admission_wait_s=wait)
    prompts = prompts_for(4, seed=1)

    async def main():
        svc.begin_batch([0, 0, 1, 1], prompt_length=64, response_length=20, max_model_len=200)
        t0 = time.time()
        # row 2's agent never calls the engine (e.g. it answered from a cache); row 3 arrives late
        outs = await asyncio.gather(agent(svc, 0, prompts[0], 2, 20), agent(svc, 1, prompts[1], 1, 20),
                                    agent(svc, 3, prompts[3], 2, 20, delay=wait + 0.4))
        return outs, await svc.end_batch(), time.time() - t0

    outs, last, took = asyncio.run(main())
    for o in outs:
        check_turns(o, 20)
    assert took < 10
    assert last["rows"] == 3 and last["late_rows"] == 1 and last["requests"] == 5
    assert wait * 0.9 <= last["admission_s"] < wait + 1.0
    assert 2 not in last["records"]


def test_a_second_concurrent_call_for_one_row_is_rejected_naming_it():
    svc, _ = make_service(n_engines=1, admission_wait_s=0.2)

    async def main():
        svc.begin_batch([0, 0], prompt_length=64, response_length=20, max_model_len=200)
        first = asyncio.create_task(svc.generate(0, [5, 6, 7], dict(SP)))
        await asyncio.sleep(0)
        with pytest.raises(ValueError, match="row 0 called generate again before its previous call returned"):
            await svc.generate(0, [5, 6, 7], dict(SP))
        await svc.generate(1, [8, 9], dict(SP))
        await first
        return await svc.end_batch()

    last = asyncio.run(main())
    assert last["requests"] == 2


def test_a_turn_too_long_for_any_engine_fails_the_batch_naming_the_row_and_turn():
    svc, _ = make_service(n_engines=2, capacity=160, chunk_size=8, admission_wait_s=0.2)

    async def main():
        svc.begin_batch([0, 1], prompt_length=64, response_length=100, max_model_len=1000)
        ok = asyncio.create_task(agent(svc, 0, [5] * 10, 1, 8))
        res = await asyncio.gather(agent(svc, 1, [6] * 10, 1, 8), return_exceptions=True)
        await ok
        with pytest.raises(Exception) as info:  # noqa: PT011
            await svc.generate(1, [6] * 150, dict(SP))  # the conversation outgrew every engine's KV
        try:
            await svc.end_batch()
        except Exception as exc:  # noqa: BLE001
            return res, info.value, exc
        return res, info.value, None

    res, err, end = asyncio.run(main())
    assert not isinstance(res[0], BaseException)
    assert "row 1 (turn 1)" in str(err) and "can never fit" in str(err)
    assert end is not None and "row 1 (turn 1)" in str(end)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 7), chunk=st.integers(2, 9), n_engines=st.integers(1, 3), seed=st.integers(0, 10_000),
       policy=st.sampled_from(["seer", "divided"]))
def test_random_multi_turn_batches(n, chunk, n_engines, seed, policy):
    rng = random.Random(seed)
    svc, _ = make_service(n_engines=n_engines, chunk_size=chunk, policy=policy, admission_wait_s=0.05)
    prompts = prompts_for(n, seed=seed)
    turns = [rng.randint(0, 3) for _ in range(n)]  # 0: the agent never calls the engine for this row
    delays = [rng.choice([0.0, 0.0, 0.02, 0.1]) for _ in range(n)]
    max_tokens = rng.randint(1, 15)

    async def main():
        svc.begin_batch([i // 2 for i in range(n)], prompt_length=64, response_length=max_tokens,
                        max_model_len=1000)
        outs = await asyncio.gather(*(agent(svc, i, prompts[i], turns[i], max_tokens, delays[i])
                                      for i in range(n)))
        return outs, await svc.end_batch()

    outs, last = asyncio.run(main())
    for i, o in enumerate(outs):
        assert len(o) == turns[i]
        check_turns(o, max_tokens)
    if any(turns):
        assert last["requests"] == sum(turns) == last["metrics"]["requests_finished"]
        assert sorted(last["records"]) == [i for i in range(n) if turns[i]]
    else:
        assert last == {}
