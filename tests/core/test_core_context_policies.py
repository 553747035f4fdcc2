"""Unit and model-based tests of seer_verl.core.context and seer_verl.core.policies."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seer_verl.core import (
    POLICY_NAMES,
    FcfsPolicy,
    GroupLengthEstimator,
    OraclePolicy,
    RequestBuffer,
    SeerPolicy,
    make_policy,
)


def test_estimator_prior_is_max_tokens_then_first_finish_then_only_raised():
    buf = RequestBuffer.from_rows([(0, 1), (0, 1), (0, 1), (1, 1)], [50, 80, 60, 30])
    est = GroupLengthEstimator(buf)
    assert est.estimate(0) == 80 and est.estimate(1) == 30
    assert est.observe(0, 20) and est.estimate(0) == 20 and est.version(0) == 1  # replaces the prior
    assert not est.observe(0, 10) and est.estimate(0) == 20 and est.version(0) == 1  # never lowered
    assert est.observe(0, 45) and est.estimate(0) == 45 and est.version(0) == 2
    assert est.finished(0) == 3 and est.finished(1) == 0
    assert not est.observe(1, 30) and est.version(1) == 0  # first finish at the prior: unchanged


def drain(policy):
    out = []
    while (r := policy.pop()) is not None:
        out.append(r.req_id)
    return out


def test_fcfs_serves_in_ticket_order():
    buf = RequestBuffer.from_rows([(0, 1)] * 4, 10)
    p = FcfsPolicy(buf.requests)
    for seq, rid in enumerate([2, 0, 3, 1]):
        p.push(buf[rid], seq)
    p.discard(3)
    assert drain(p) == [2, 0, 1]


def test_seer_serves_probes_shortest_generated_first_then_rest_by_estimate():
    rows = [(0, 1), (0, 1), (1, 1), (1, 1), (2, 1), (2, 1)]
    buf = RequestBuffer.from_rows(rows, 100)
    buf[0].token_ids.extend([0] * 30)  # probe of group 0 has generated 30
    buf[2].token_ids.extend([0] * 5)  # probe of group 1 has generated 5
    p = SeerPolicy(buf.requests)
    p.estimator.observe(0, 40)
    p.estimator.observe(2, 90)
    for seq, rid in enumerate(range(6)):
        if rid != 4:  # group 2's probe is running
            p.push(buf[rid], seq)
    assert p.probes_waiting == 2
    # probes 2 (5 generated) then 0 (30); then rest: group 1 (prior 100), group 2 (90), group 0 (40)
    assert drain(p) == [2, 0, 3, 5, 1]


def test_seer_refiles_waiting_requests_when_their_group_estimate_rises():
    rows = [(0, 1), (0, 1), (0, 1), (1, 1), (1, 1)]
    buf = RequestBuffer.from_rows(rows, 100)
    p = SeerPolicy(buf.requests)
    p.estimator.observe(0, 50)
    p.estimator.observe(1, 60)
    p.push(buf[2], 0)
    p.push(buf[4], 1)
    assert p.priority(buf[2]) == (1, -50)
    buf[1].token_ids.extend([0] * 70)
    buf[1].finished = True
    p.on_finished(buf[1])  # group 0 now 70 > group 1's 60: its waiting member moves ahead
    assert p.estimator.estimate(0) == 70
    assert drain(p) == [2, 4]


def test_a_running_sibling_raises_its_group_estimate_once_a_member_finished():
    rows = [(0, 1)] * 3 + [(1, 1)] * 2
    buf = RequestBuffer.from_rows(rows, 100)
    p = SeerPolicy(buf.requests)
    buf[3].token_ids.extend([0] * 60)
    p.on_progress(buf[3])  # group 1 has no finished member: its estimate stays the prior (100)
    assert p.estimator.estimate(1) == 100 and p.estimator.version(1) == 0
    p.estimator.observe(0, 10)  # group 0's first finisher was short ...
    p.estimator.observe(1, 40)
    p.push(buf[2], 0)
    p.push(buf[4], 1)
    assert drain(p) == [4, 2]  # group 1 (40) before group 0 (10)
    p.push(buf[2], 0)
    p.push(buf[4], 1)
    buf[1].token_ids.extend([0] * 50)
    p.on_progress(buf[1])  # ... but a sibling still runs at 50 tokens: group 0 is at least 50 long
    assert p.estimator.estimate(0) == 50 and p.estimator.version(0) == 2
    assert drain(p) == [2, 4]
    buf[1].token_ids.extend([0] * 5)
    assert not p.estimator.observe_progress(1, 30)  # never lowers


def test_oracle_serves_longest_true_length_first_and_requires_true_lengths():
    buf = RequestBuffer.from_rows([(0, 1)] * 4, 50, true_lens=[10, 70, 30, 50])
    p = OraclePolicy(buf.requests)
    for seq in range(4):
        p.push(buf[seq], seq)
    assert drain(p) == [1, 3, 2, 0]  # 70 is capped to 50 = 50, ties by ticket
    with pytest.raises(ValueError, match="seer.policy='oracle' needs the true length.*req_ids 0, 1"):
        OraclePolicy(RequestBuffer.from_rows([(0, 1)] * 2, 50).requests)


def test_unknown_policy_names_the_config_key_and_allowed_values():
    buf = RequestBuffer.from_rows([(0, 1)], 5)
    with pytest.raises(ValueError, match=r"seer\.policy must be one of 'divided', 'seer', 'oracle'; got 'lfs'"):
        make_policy("lfs", buf.requests)
    assert POLICY_NAMES == ("divided", "seer", "oracle")
    assert isinstance(make_policy("seer", buf.requests), SeerPolicy)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_policies_match_a_brute_force_reference(data):
    """Random push/pop/discard/finish sequences: each pop equals the minimum of a sorted model."""
    policy_name = data.draw(st.sampled_from(POLICY_NAMES))
    n_groups = data.draw(st.integers(1, 4))
    rows = data.draw(st.lists(st.tuples(st.integers(0, n_groups - 1), st.just(1)), min_size=1, max_size=12))
    true_lens = data.draw(st.lists(st.integers(1, 30), min_size=len(rows), max_size=len(rows)))
    buf = RequestBuffer.from_rows(rows, 25, true_lens)
    policy = make_policy(policy_name, buf.requests)
    model: dict[int, int] = {}  # req_id -> ticket
    est: dict[int, int] = {g: 25 for g in buf.groups}
    finished_any: set[int] = set()
    seq = 0
    for _ in range(data.draw(st.integers(1, 60))):
        op = data.draw(st.sampled_from(("push", "push", "pop", "discard", "finish")))
        idle = [r.req_id for r in buf if r.req_id not in model and not r.finished]
        if op == "push" and idle:
            rid = data.draw(st.sampled_from(idle))
            buf[rid].token_ids.extend([0] * data.draw(st.integers(0, 3)))
            policy.push(buf[rid], seq)
            model[rid] = seq
            seq += 1
        elif op == "discard" and model:
            rid = data.draw(st.sampled_from(sorted(model)))
            policy.discard(rid)
            del model[rid]
        elif op == "finish" and idle:
            rid = data.draw(st.sampled_from(idle))
            r = buf[rid]
            r.finished = True
            g = r.group_id
            est[g] = r.generated if g not in finished_any else max(est[g], r.generated)
            finished_any.add(g)
            policy.on_finished(r)
        elif op == "pop":

            def key(rid):
                r = buf[rid]
                if policy_name == "divided":
                    k = ()
                elif policy_name == "oracle":
                    k = (-min(r.true_len, r.max_tokens),)
                else:
                    k = (0, r.generated) if r.is_probe else (1, -est[r.group_id])
                return k + (model[rid],)

            expect = min(model, key=key) if model else None
            got = policy.pop()
            assert (got.req_id if got else None) == expect
            if expect is not None:
                del model[expect]
        assert len(policy) == len(model)
