"""Unit tests of seer_verl.core.scheduler (anti-starvation) and seer_verl.core.config."""

from __future__ import annotations

import pytest

from seer_verl.core import RequestBuffer, Scheduler, SeerConfig, make_policy


def sched(policy="seer", bound=2, rows=None, max_tokens=100):
    buf = RequestBuffer.from_rows(rows or [(0, 1), (0, 1), (1, 1), (1, 1)], max_tokens)
    return buf, Scheduler(make_policy(policy, buf.requests), buf.requests, bound)


def test_request_becomes_starved_after_bound_decisions_oldest_first():
    buf, s = sched(bound=3)
    s.enqueue(buf[1], 0)
    s.enqueue(buf[3], 1)
    assert s.starved(2) is None
    assert s.starved(3).req_id == 1  # 3 - 0 >= 3
    assert s.passed_over(1, 3) == 3 and s.passed_over(3, 3) == 2
    assert s.dispatched(buf[1], 3) == 3
    assert s.starved(3) is None and s.starved(4).req_id == 3
    assert s.oldest().req_id == 3 and len(s) == 1


def test_bound_zero_makes_the_oldest_request_always_starved():
    buf, s = sched(bound=0)
    for rid in (2, 0, 3):
        s.enqueue(buf[rid], 0)
    order = []
    while (r := s.starved(len(order))) is not None:
        order.append(r.req_id)
        s.dispatched(r, len(order))
    assert order == [2, 0, 3]


def test_popped_request_keeps_its_ticket_and_age_when_put_back():
    buf, s = sched(policy="divided", bound=10)
    s.enqueue(buf[0], 0)
    s.enqueue(buf[1], 4)
    r = s.pop()
    assert r.req_id == 0 and 0 in s  # still waiting
    s.putback(r)
    assert s.pop().req_id == 0
    s.putback(buf[0])
    assert s.passed_over(0, 9) == 9 and s.starved(10).req_id == 0
    s.dispatched(buf[0], 10)
    s.putback(buf[0])  # no longer waiting: ignored
    assert s.pop().req_id == 1 and s.pop() is None


def test_enqueue_twice_and_negative_bound_are_errors():
    buf, s = sched()
    s.enqueue(buf[0], 0)
    with pytest.raises(RuntimeError, match="already waiting"):
        s.enqueue(buf[0], 0)
    with pytest.raises(ValueError, match="starvation_bound"):
        Scheduler(make_policy("seer", buf.requests), buf.requests, -1)


def test_default_config_is_valid_and_auto_starvation_bound_scales_with_requests():
    c = SeerConfig().validate()
    assert (c.policy, c.chunk_size, c.affinity_threshold) == ("seer", 8192, 32)
    assert c.effective_starvation_bound(1000) == 4000
    assert SeerConfig(starvation_bound=7).effective_starvation_bound(1000) == 7


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("policy", "fifo", r"seer\.policy must be one of 'divided', 'seer', 'oracle'; got 'fifo'"),
        ("chunk_size", 0, r"seer\.chunk_size must be null \(auto.*or an integer >= 1 .*got 0"),
        ("chunk_size", 2.5, r"seer\.chunk_size .*got 2\.5"),
        ("chunk_size", True, r"seer\.chunk_size .*got True"),
        ("affinity_threshold", -1, r"seer\.affinity_threshold must be an integer >= 0 .*got -1"),
        ("starvation_bound", -2, r"seer\.starvation_bound must be null \(auto\) or an integer >= 0.*got -2"),
        (
            "max_inflight_per_engine",
            0,
            r"seer\.max_inflight_per_engine must be null \(no cap\) or an integer >= 1; got 0",
        ),
        ("lookahead", 0, r"seer\.lookahead must be an integer >= 1; got 0"),
    ],
)
def test_validate_names_key_value_and_allowed_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        SeerConfig(**{field: value}).validate()


def test_from_mapping_builds_validates_and_rejects_unknown_keys():
    c = SeerConfig.from_mapping({"policy": "divided", "chunk_size": 512, "starvation_bound": None})
    assert (c.policy, c.chunk_size, c.starvation_bound) == ("divided", 512, None)
    with pytest.raises(ValueError, match=r"unknown key\(s\) seer\.chunk; allowed: seer\.policy"):
        SeerConfig.from_mapping({"chunk": 5})
    with pytest.raises(ValueError, match=r"seer\.chunk_size"):
        SeerConfig.from_mapping({"chunk_size": -5})
