"""Grouped SD parts that need no engine: request tags, the engine-side proposer (driven with a fake vLLM input
batch), the draft server and a draft client, and ``seer.spec`` validation."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest

from seer_verl.speculative.config import WORKER_EXTENSION, SpecConfig, check_engine_kwargs
from seer_verl.speculative.draft_server import DraftClient, GroupedDraftServer
from seer_verl.speculative.proposer import AcceptanceStats, GroupSuffixProposer
from seer_verl.speculative.request_tag import format_request_id, parse
from seer_verl.speculative.settings import DrafterSettings


def test_request_tag_round_trip_and_foreign_ids():
    rid = format_request_id(3, 7, 2, 55, True, 19, 4, 120) + "-a1b2c3d4"  # vLLM appends a random suffix
    tag = parse(rid)
    assert (tag.batch, tag.group, tag.sibling, tag.prompt_len, tag.probe, tag.row, tag.chunk, tag.dispatch) == (
        3, 7, 2, 55, True, 19, 4, 120)
    assert tag.gid == "b3g7"
    assert parse("chatcmpl-123") is None and parse("seer-5-0-1") is None


def _config(k=8, max_len=4096, depth=64, min_prob=0.1):
    spec = SimpleNamespace(num_speculative_tokens=k, suffix_decoding_max_tree_depth=depth,
                           suffix_decoding_min_token_prob=min_prob)
    return SimpleNamespace(speculative_config=spec, model_config=SimpleNamespace(max_model_len=max_len))


class FakeBatch:
    """The parts of vLLM's InputBatch the proposer reads."""

    def __init__(self, rows: list[tuple[str, list[int], int]]):
        # rows: (req_id, all tokens so far, number of prompt tokens)
        self.req_ids = [r[0] for r in rows]
        self.req_id_to_index = {r[0]: i for i, r in enumerate(rows)}
        width = max(len(r[1]) for r in rows) + 16
        self.token_ids_cpu = np.zeros((len(rows), width), dtype=np.int32)
        for i, (_, toks, _) in enumerate(rows):
            self.token_ids_cpu[i, :len(toks)] = toks
        self.num_tokens_no_spec = np.array([len(r[1]) for r in rows], dtype=np.int32)
        self.num_prompt_tokens = np.array([r[2] for r in rows], dtype=np.int32)


PROMPT = [1, 2, 3, 4, 5]
TEXT = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21]


def _rid(sib, plen=len(PROMPT), group=0, probe=False):
    return format_request_id(1, group, sib, plen, probe, sib, 0, sib) + "-rnd"


def _proposer(**settings):
    p = GroupSuffixProposer(_config())
    p.configure({"mode": "fixed", **settings})
    return p


def test_unconfigured_engine_drafts_nothing():
    p = GroupSuffixProposer(_config())  # e.g. stock verl traffic on engines started for Seer
    p.apply_increments([("b1g0", 5, 0, TEXT)])
    assert p.propose(8, FakeBatch([(_rid(0), PROMPT + TEXT[:4], 5)]), [[TEXT[3]]]) == [[]]


def test_reset_returns_the_drafter_to_a_fresh_engine():
    # the bench resets the drafters between policies: nothing of the previous user's settings or evidence stays
    p = _proposer()
    p.apply_increments([("b1g0", 5, 0, TEXT)])
    assert p.propose(8, FakeBatch([(_rid(0), PROMPT + TEXT[:4], 5)]), [[TEXT[3]]])[0]
    p.reset()
    assert p.settings.mode == "off" and not p.trees.has_group("b1g0") and p.take_stats()["totals"]["steps"] == 0
    p.apply_increments([("b1g0", 5, 0, TEXT)])
    assert p.propose(8, FakeBatch([(_rid(0), PROMPT + TEXT[:4], 5)]), [[TEXT[3]]]) == [[]]


def test_sibling_on_same_engine_drafts_its_continuation():
    p = _proposer()
    a, b = _rid(0), _rid(1)
    # sibling 0 has produced TEXT (first sight: everything after the prompt is new, sampled = last token)
    p.propose(8, FakeBatch([(a, PROMPT + TEXT[:1], 5)]), [[TEXT[0]]])
    for j in range(1, len(TEXT)):
        p.propose(8, FakeBatch([(a, PROMPT + TEXT[:j + 1], 5)]), [[TEXT[j]]])
    # sibling 1 starts the same text: the group tree offers the rest of sibling 0's response
    drafts = p.propose(8, FakeBatch([(a, PROMPT + TEXT, 5), (b, PROMPT + TEXT[:3], 5)]), [[], [TEXT[2]]])
    assert drafts[0] == []  # partial prefill row: no draft
    assert drafts[1] == TEXT[3:6]  # arctic caps a draft at match length x max_spec_factor (1.0): 3 tokens
    other_group = _rid(1, group=9)
    d2 = p.propose(8, FakeBatch([(other_group, PROMPT + TEXT[:3], 5)]), [[TEXT[2]]])
    assert d2 == [[]] or d2[0][:4] != TEXT[3:7]  # another group never sees group 0's responses


def test_continuation_chunk_seeds_tree_from_its_prompt_and_increments_are_idempotent():
    p = _proposer()
    # a continuation chunk of sibling 0: its prompt holds the original prompt + 6 earlier response tokens
    a = _rid(0)
    p.propose(8, FakeBatch([(a, PROMPT + TEXT[:7], 11)]), [[TEXT[6]]])
    assert p.trees.seq_len("b1g0", 0) == 7
    # the same tokens again from the draft server (another engine produced them earlier): nothing duplicated
    assert p.apply_increments([("b1g0", 0, 0, TEXT[:7])]) == 0
    assert p.apply_increments([("b1g0", 0, 5, TEXT[5:9])]) == 2
    assert p.trees.seq_len("b1g0", 0) == 9
    assert p.apply_increments([("b1g0", 0, 20, [1, 2])]) == 0  # a gap is not filled with later tokens
    # a sibling generated elsewhere: its tokens drive drafts here
    p.apply_increments([("b1g0", 3, 0, [40, 41, 42, 43, 44, 45, 46])])
    b = _rid(1)
    d = p.propose(8, FakeBatch([(b, PROMPT + [40, 41], 5)]), [[41]])
    assert d[0] == [42, 43]  # match length 2 -> 2 draft tokens


def test_acceptance_is_recorded_and_fixed_mode_caps_draft_length():
    p = GroupSuffixProposer(_config(k=8))
    p.configure({"mode": "fixed", "fixed_gamma": 3})  # unconfigured engines draft nothing
    p.apply_increments([("b1g0", 5, 0, TEXT)])
    a = _rid(0)
    d = p.propose(8, FakeBatch([(a, PROMPT + TEXT[:4], 5)]), [[TEXT[3]]])
    assert d[0] == TEXT[4:7]  # capped at 3
    # next step: 2 of the 3 drafts accepted + the bonus token
    d = p.propose(8, FakeBatch([(a, PROMPT + TEXT[:6] + [99], 5)]), [[TEXT[4], TEXT[5], 99]])
    st = p.take_stats()
    assert st["totals"]["accepted_tokens"] == 2 and st["totals"]["draft_tokens"] >= 3
    assert len(st["steps"]) == 2 and st["steps"][1][4] == 2
    assert p.take_stats()["steps"] == []  # the log is cleared once taken


def test_profile_mode_gives_every_request_exactly_g_dummy_drafts():
    # the step-time profiler (scripts/profile_step_time.py cpu-sd) needs verification steps of a known shape,
    # whatever the trees hold: every request verifies fixed_gamma tokens (its last token repeated)
    p = GroupSuffixProposer(_config(k=8))
    p.configure({"mode": "profile", "fixed_gamma": 4})
    rows = [(_rid(0), PROMPT + [7], 5), ("plain-request", [3, 3, 9], 2)]
    assert p.propose(8, FakeBatch(rows), [[7], [9]]) == [[7] * 4, [9] * 4]
    assert p.take_stats()["steps"][-1][3] == 8
    p.configure({"mode": "off"})
    assert p.propose(8, FakeBatch(rows), [[7], [9]]) == [[], []]


def test_adaptive_mode_drafts_only_when_it_pays():
    cheap = {"c0": 0.05, "c_seq": 0.0, "c_tok": 0.0001, "c_kv": 0.0}   # memory-bound: extra tokens are free
    costly = {"c0": 0.0, "c_seq": 0.0, "c_tok": 0.05, "c_kv": 0.0}     # compute-bound: every token costs a step
    for model, expect_drafts in ((cheap, True), (costly, False)):
        p = GroupSuffixProposer(_config())
        p.configure({"mode": "adaptive", "step_time": model})
        p.apply_increments([("b1g0", 5, 0, TEXT)])
        d = p.propose(8, FakeBatch([(_rid(0), PROMPT + TEXT[:2], 5)]), [[TEXT[1]]])
        assert bool(d[0]) == expect_drafts
    p.suspend(True)  # draft server lost: no speculation at all
    assert p.propose(8, FakeBatch([(_rid(0), PROMPT + TEXT[:3], 5)]), [[TEXT[2]]]) == [[]]


def test_adaptive_mode_drafts_per_request_from_calibrated_tree_statistics():
    # verification is costly here (a query token costs a sixth of a 2-request step): a draft token pays only if
    # it is accepted more than ~1/3 of the time
    a, b = _rid(0, group=0), _rid(0, group=1)

    def engine():
        p = GroupSuffixProposer(_config())
        p.configure({"mode": "adaptive", "step_time": {"c0": 0.1, "c_seq": 0.0, "c_tok": 0.025, "c_kv": 0.0}})
        # group 0: three siblings elsewhere agree on the continuation; group 1: three siblings each went another way
        for sib in (5, 6, 7):
            p.apply_increments([("b1g0", sib, 0, TEXT)])
            p.apply_increments([("b1g1", sib, 0, TEXT[:2] + [60 + sib, 70, 71])])
        d = p.propose(8, FakeBatch([(a, PROMPT + TEXT[:2], 5), (b, PROMPT + TEXT[:2], 5)]),
                      [[TEXT[1]], [TEXT[1]]])
        assert d[0] and d[0] == TEXT[2:2 + len(d[0])]  # the tree says 3 of 4: sent
        assert d[1] == []  # the tree says 1 of 4 for each branch: not worth verifying
        return p

    next_step = (FakeBatch([(a, PROMPT + TEXT[:3], 5)]), [[TEXT[2]]])  # its draft was rejected (bonus token only)
    assert engine().propose(8, *next_step)[0]  # one rejection does not switch the group's drafts off
    # an engine that has learnt that such confident drafts are always rejected stops sending them
    p = engine()
    for key in {k for keys in ([p._reqs[a].last_keys], [p.calibration.keys([0.75] * 8, m) for m in (1, 2, 4)])
                for ks in keys for k in ks}:
        for _ in range(40):
            p.calibration.record([key], 0)
    assert p.propose(8, *next_step) == [[]]
    assert p.take_stats()["calibration"]


def test_engine_steps_feed_the_cost_fit(monkeypatch):
    import seer_verl.speculative.proposer as prop

    clock = [100.0]
    monkeypatch.setattr(prop.time, "perf_counter", lambda: clock[0])
    p = _proposer(mode="adaptive", step_time={"c0": 0.05, "c_seq": 0.0, "c_tok": 0.0001, "c_kv": 0.0})
    rows = [(_rid(s), PROMPT + TEXT[:3], 5) for s in range(4)]
    p.propose(8, FakeBatch(rows), [[TEXT[2]]] * 4)  # first sight of every row: a prefill step, not recorded
    for _ in range(64):  # verification really costs 6 ms per query token on this "engine"
        q = 4 + sum(st.last_draft for st in p._reqs.values())
        clock[0] += 0.066 + 0.00625 * q
        p.propose(8, FakeBatch(rows), [[TEXT[2]]] * 4)
    fit = p.take_stats()["cost_fit"]
    assert fit["recorded"] == 64
    assert fit["c0_c_seq_c_tok"][2] > 0.001  # the per-token cost moved from the cheap prior towards the truth


def test_acceptance_stats_conditional_beta():
    s = AcceptanceStats(4, prior_weight=0.0, halflife=1e12)
    for _ in range(10):
        s.record(4, 4)
    for _ in range(10):
        s.record(4, 1)  # first accepted, second rejected
    b = s.beta()
    assert b[0] == pytest.approx(1.0) and b[1] == pytest.approx(0.5) and b[2] == pytest.approx(1.0)


def test_draft_server_append_fetch_release_and_restart_tolerance():
    srv = GroupedDraftServer(max_depth=16)
    srv.register_group("g")
    assert srv.append("g", 0, 0, [1, 2, 3]) == 3
    assert srv.append("g", 0, 2, [3, 4]) == 1  # overlap ignored
    assert srv.fetch(["g"], {}) == [("g", 0, 0, [1, 2, 3, 4])]
    assert srv.fetch(["g"], {"g": {0: 3}}) == [("g", 0, 3, [4])]
    assert srv.fetch(["g"], {"g": {0: 4}}) == []
    srv.append("g", 1, 10, [7, 8])  # the server missed the start of sibling 1 (e.g. it was restarted)
    assert srv.fetch(["g"], {"g": {0: 4}}) == [("g", 1, 10, [7, 8])]
    srv.release_groups(["g"])
    assert srv.fetch(["g"], {}) == [] and srv.stats()["groups"] == 0


class _Remote:
    """Ray-handle look-alike over a local object (method.remote(...) returns an awaitable)."""

    def __init__(self, obj, fail=False):
        self.obj, self.fail = obj, fail

    def __getattr__(self, name):
        fn = getattr(self.obj, name)
        outer = self

        class M:
            @staticmethod
            def remote(*a, **k):
                async def call():
                    if outer.fail:
                        raise ConnectionError("draft server gone")
                    return fn(*a, **k)
                return call()
        return M


def test_draft_client_pushes_increments_and_suspends_while_server_is_down():
    srv = GroupedDraftServer()
    handle = _Remote(srv)
    pushed: list[tuple[str, tuple]] = []

    async def push(method, args):
        pushed.append((method, args))

    async def scenario():
        c = DraftClient(0, handle, push, sync_interval_s=0.01)
        c.activate("g")
        srv.append("g", 0, 0, [1, 2, 3])
        srv.append("g", 1, 0, [5, 6])
        c.local_tokens("g", 1, 2)  # engine 0 produced sibling 1 itself
        assert await c.sync_once() == 3
        assert pushed == [("seer_sd_apply", ([("g", 0, 0, [1, 2, 3])],))]
        assert await c.sync_once() == 0
        handle.fail = True
        await c.sync_once()
        assert pushed[-1] == ("seer_sd_suspend", (True,)) and c.outages == 1
        handle.fail = False
        srv.append("g", 0, 3, [4])
        assert await c.sync_once() == 1
        assert ("seer_sd_suspend", (False,)) in pushed
    asyncio.run(scenario())


def test_spec_config_validation_names_key_and_allowed_values():
    assert SpecConfig.from_mapping({"enabled": True}).gamma_max == 8
    for bad, key in (({"mode": "greedy"}, "seer.spec.mode"), ({"gamma_max": 0}, "seer.spec.gamma_max"),
                     ({"lam": 0.5}, "seer.spec.lam"), ({"fixed_gamma": 9}, "seer.spec.fixed_gamma"),
                     ({"top_k": 0}, "seer.spec.top_k"), ({"bogus": 1}, "bogus"),
                     ({"step_time": "/nonexistent.json"}, "seer.spec.step_time")):
        with pytest.raises(ValueError, match=key):
            SpecConfig.from_mapping(bad)
    spec = SpecConfig.from_mapping({"enabled": True})
    with pytest.raises(ValueError, match="worker_extension_cls"):
        check_engine_kwargs(spec, {})
    with pytest.raises(ValueError, match="method=suffix"):
        check_engine_kwargs(spec, {"worker_extension_cls": WORKER_EXTENSION})
    with pytest.raises(ValueError, match="num_speculative_tokens"):
        check_engine_kwargs(spec, {"worker_extension_cls": WORKER_EXTENSION,
                                   "speculative_config": {"method": "suffix", "num_speculative_tokens": 4}})
    check_engine_kwargs(spec, {"worker_extension_cls": WORKER_EXTENSION,
                               "speculative_config": '{"method": "suffix", "num_speculative_tokens": 8}'})


def test_engine_settings_are_the_users_config_on_the_wire():
    # SpecConfig (what a user writes) -> DrafterSettings (what each engine's drafter runs with) -> a plain dict (RPC)
    fixed = SpecConfig.from_mapping({"enabled": True, "mode": "fixed", "gamma_max": 6, "lam": 3, "top_k": 2})
    wire = fixed.engine_settings().as_dict()
    assert wire["mode"] == "fixed" and wire["gamma_max"] == 6 and wire["fixed_gamma"] == 6  # null -> gamma_max
    assert wire["lam"] == 3.0 and wire["top_k"] == 2 and wire["step_time"] is None
    adaptive = SpecConfig.from_mapping({"enabled": True}).engine_settings()
    assert set(adaptive.step_time) >= {"c0", "c_seq", "c_tok"}  # the packaged CPU step-time model's fields
    p = _proposer()
    p.configure(wire)
    assert p.settings == DrafterSettings.from_dict(wire)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['gama_max'\]"):  # a typo is not silently dropped
        p.configure({"gama_max": 4})
    with pytest.raises(ValueError, match="mode='greedy'.*'off', 'profile'"):
        p.configure({"mode": "greedy"})
    assert p.settings.mode == "fixed"  # a rejected update leaves the engine's settings as they were


def test_engine_tree_lets_a_request_draft_from_another_groups_response():
    # group 0's response sits on this engine; group 1's request continues the same text (shared answer phrasing)
    other = [30, 31]
    cases = {}
    for seqs in (0, 64):
        p = _proposer(engine_seqs=seqs)
        p.apply_increments([("b1g0", 0, 0, TEXT)])
        # group 1's prompt shares nothing with group 0; its response has just produced TEXT[:4]
        row = (_rid(0, plen=2, group=1), other + TEXT[:4], 2)
        cases[seqs] = p.propose(8, FakeBatch([row]), [[TEXT[3]]])[0]
        assert p.trees.engine_seqs == seqs
    assert cases[0] == []  # group 1's tree holds its own prefix only: no continuation
    assert cases[64][:2] == TEXT[4:6]  # the engine-wide tree holds group 0's response
    with pytest.raises(ValueError, match=r"seer.spec.engine_seqs=-1 .*0..1000000"):
        SpecConfig.from_mapping({"enabled": True, "engine_seqs": -1})
    assert SpecConfig.from_mapping({"engine_seqs": 512}).engine_settings().engine_seqs == 512


def test_min_gain_reaches_the_engines_and_bad_values_are_refused():
    from seer_verl.core.draft_budget import DEFAULT_MIN_GAIN

    assert SpecConfig.from_mapping({"enabled": True}).engine_settings().min_gain == DEFAULT_MIN_GAIN
    wire = SpecConfig.from_mapping({"enabled": True, "min_gain": 0.2}).engine_settings().as_dict()
    p = _proposer()
    p.configure(wire)
    assert p.settings.min_gain == 0.2
    # the engine's budget applies it: a draft predicted to save ~40% of the time per token (a query token costs
    # a third of the step) is sent without a margin and not with a 50% one
    cost = {"c0": 0.1, "c_seq": 0.0, "c_tok": 0.05, "c_kv": 0.0}
    sent = {}
    for margin in (0.0, 0.5):
        p = GroupSuffixProposer(_config())
        p.configure({"mode": "adaptive", "step_time": cost, "min_gain": margin})
        p.apply_increments([("b1g0", 5, 0, TEXT)])
        sent[margin] = p.propose(8, FakeBatch([(_rid(0), PROMPT + TEXT[:2], 5)]), [[TEXT[1]]])[0]
    assert sent[0.0] and sent[0.5] == []
    for bad in (-0.01, 1, True, "x"):
        with pytest.raises(ValueError, match=r"seer.spec.min_gain=.*a fraction in \[0, 1\)"):
            SpecConfig.from_mapping({"min_gain": bad})


def test_margin_bands_reach_the_engines_and_bad_values_are_refused():
    assert SpecConfig.from_mapping({"enabled": True}).engine_settings().margin_bands == 5
    p = _proposer()
    p.configure(SpecConfig.from_mapping({"enabled": True, "margin_bands": 3}).engine_settings().as_dict())
    assert len(p.take_stats()["margin"]["bands"]) == 3
    for bad in (0, 17, True, 2.5):
        with pytest.raises(ValueError, match=r"seer.spec.margin_bands=.*an integer in 1..16"):
            SpecConfig.from_mapping({"margin_bands": bad})


def test_learnt_margin_stops_drafts_whose_predicted_saving_does_not_materialise(monkeypatch):
    import seer_verl.speculative.proposer as prop

    # the tree and its calibration keep promising (calibration frozen: the case where the budget's inputs are
    # optimistic and cannot tell), the engine rejects every draft and charges for verifying it as the fit says
    clock = [100.0]
    monkeypatch.setattr(prop.time, "perf_counter", lambda: clock[0])
    cost = {"c0": 0.1, "c_seq": 0.0, "c_tok": 0.01, "c_kv": 0.0}
    sent = {}
    for learn in (False, True):
        p = GroupSuffixProposer(_config())
        p.configure({"mode": "adaptive", "step_time": cost, "min_gain": 0.05, "learn_margin": learn,
                     "margin_bands": 5})
        monkeypatch.setattr(p.calibration, "record", lambda keys, accepted: None)
        rows = [(_rid(s), PROMPT + TEXT[:2], 5) for s in range(2)]
        for sib in (5, 6, 7):
            p.apply_increments([("b1g0", sib, 0, TEXT)])
        p.propose(8, FakeBatch(rows), [[TEXT[1]]] * 2)  # first sight: a prefill step
        drafted = []
        for _ in range(1000):
            q = 2 + sum(st.last_draft for st in p._reqs.values())
            clock[0] += 0.1 + 0.01 * q
            d = p.propose(8, FakeBatch(rows), [[TEXT[1]]] * 2)  # only the bonus token: every draft rejected
            drafted.append(sum(len(x) for x in d))
        sent[learn] = sum(1 for x in drafted[-500:] if x)
        margin = p.take_stats()["margin"]
    assert sent[False] == 500  # a fixed margin drafts on, losing time every step
    # the learnt one drafts only to test the evidence again as it fades (~2% of the steps with the defaults)
    band = margin["bands"][1]  # two rows: the band of batches 2-3
    assert sent[True] < 25 and band["optimism"] > 0.4 and band["recorded"] == margin["recorded"] > 0
    # the bar is per batch-size band: outcomes are recorded in the band of their batch size, and each step
    # drafts against its own band's bar (core/draft_margin.py: a band without evidence borrows the engine's)
    assert [b["recorded"] for b in margin["bands"]][:2] == [0, margin["recorded"]]
    p.propose(8, FakeBatch(rows[:1]), [[TEXT[1]]])
    assert p.take_stats()["steps"][-1][8] == round(p._margin.margin(1), 4)
    p.propose(8, FakeBatch(rows), [[TEXT[1]]] * 2)
    assert p.take_stats()["steps"][-1][8] == round(p._margin.margin(2), 4)
