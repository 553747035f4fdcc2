"""Grouped draft trees (seer_verl.speculative.group_tree): fast unit tests on arctic's native suffix tree."""

from __future__ import annotations

import pytest

from seer_verl.speculative.group_tree import EMPTY_DRAFT, Draft, GroupDraftTrees, microbench


def test_siblings_tokens_draft_for_another_sibling():
    t = GroupDraftTrees(max_depth=32)
    t.extend("g", 0, [1, 2, 3, 4, 5, 6, 7, 8, 9])
    t.extend("g", 1, [1, 2, 3, 4, 5, 6, 7, 8, 9])
    # sibling 2 has produced nothing yet: its context is its prompt tail + first tokens
    d = t.speculate("g", [100, 1, 2, 3], 4)
    # max_spec_factor=1: a draft is at most as long as the matched suffix (3)
    assert d.tokens == [4, 5, 6]
    assert d.match_len == 3
    d = t.speculate("g", [100, 1, 2, 3], 4, max_spec_factor=2.0)
    assert d.tokens == [4, 5, 6, 7]
    assert d.match_len == 3
    assert len(d.probs) == len(d.tokens)
    assert all(p == pytest.approx(1.0) for p in d.probs)
    assert d.expected_accepted() == pytest.approx(4.0)
    assert d.score == pytest.approx(4.0)
    assert t.speculate("g", [100, 1, 2, 3], 2).tokens == [4, 5]
    # another group does not see them
    t.register_group("h")
    assert t.speculate("h", [100, 1, 2, 3], 4).tokens == []


def test_own_sequence_gives_c_over_c_plus_1():
    t = GroupDraftTrees()
    t.extend("g", 0, [1, 2, 3, 4, 5])  # the other sibling
    t.extend("g", 1, [1, 2, 3, 9])  # the requester itself, in progress
    d = t.speculate("g", [1, 2, 3], 4, min_token_prob=0.1)
    assert d.tokens[:1] in ([4], [9])
    assert d.probs[0] == pytest.approx(0.5)


def test_probs_are_conditional():
    t = GroupDraftTrees()
    t.extend("g", 0, [5, 10, 11, 12, 13, 14, 15])
    t.extend("g", 1, [5, 10, 11, 12, 20, 21])
    t.extend("g", 2, [5, 10, 11, 12, 20, 22])
    d = t.speculate("g", [5, 10, 11, 12], 8)
    assert d.tokens == [20, 21]
    assert d.probs == pytest.approx([2 / 3, 1 / 2])
    assert d.expected_accepted() == pytest.approx(2 / 3 + 1 / 3)
    assert d.score == pytest.approx(d.expected_accepted())


def test_unknown_group_gives_empty_draft():
    t = GroupDraftTrees()
    d = t.speculate("nope", [1, 2, 3], 8)
    assert d == EMPTY_DRAFT == Draft([], [], 0, 0)
    assert d.expected_accepted() == 0.0
    assert t.speculate("nope", [1, 2, 3], 8, top_k=4) == EMPTY_DRAFT


def test_register_idempotent_and_release_frees():
    t = GroupDraftTrees()
    t.register_group("g")
    t.extend("g", 0, [1, 2, 3, 4])
    t.register_group("g")  # idempotent: keeps the tokens
    assert t.has_group("g")
    assert t.seq_len("g", 0) == 4
    assert t.speculate("g", [0, 1, 2], 2).tokens == [3, 4]
    t.release_group("g")
    assert not t.has_group("g")
    assert t.seq_len("g", 0) == 0
    assert t.speculate("g", [0, 1, 2], 2) == EMPTY_DRAFT
    assert t.stats()["groups"] == 0
    t.release_group("g")  # releasing twice is fine


def test_seq_len_bookkeeping_and_stats():
    t = GroupDraftTrees()
    t.extend("g", 3, [1, 2, 3])
    t.extend("g", 3, [])
    t.extend("g", 3, [4, 5])
    t.extend("g", 7, [9])
    t.extend("h", 3, [1])
    assert t.seq_len("g", 3) == 5
    assert t.seq_len("g", 7) == 1
    assert t.seq_len("g", 8) == 0
    assert t.seq_len("h", 3) == 1
    t.speculate("g", [1, 2, 3], 2)
    s = t.stats()
    assert (s["groups"], s["sequences"], s["tokens"]) == (2, 3, 7)
    assert s["extend_calls"] == 5 and s["extend_tokens"] == 7
    assert s["speculate_calls"] == 1
    assert s["extend_s"] >= 0 and s["speculate_us_per_call"] > 0
    t.remove_seq("g", 3)
    assert t.seq_len("g", 3) == 0
    assert t.stats()["tokens"] == 2


def test_incremental_extend_equals_one_shot():
    a, b = GroupDraftTrees(), GroupDraftTrees()
    seq = [1, 2, 3, 1, 2, 4, 1, 2, 3, 5]
    a.extend("g", 0, seq)
    for i in range(0, len(seq), 3):
        b.extend("g", 0, seq[i:i + 3])
    for ctx in ([1, 2], [9, 1, 2, 3], [2, 4]):
        assert a.speculate("g", ctx, 4) == b.speculate("g", ctx, 4)


def test_context_is_cut_to_max_depth():
    t = GroupDraftTrees(max_depth=4)
    t.extend("g", 0, [1, 2, 3, 4, 5])
    # a long context whose last tokens match: only the tail is used
    assert t.speculate("g", list(range(100, 200)) + [2, 3], 2).tokens == [4, 5]


def _fork_tree() -> GroupDraftTrees:
    """After context [1, 2, 3]: 3 siblings continue with 7 then end; 2 continue with a long shared run."""
    t = GroupDraftTrees()
    for s in range(3):
        t.extend("g", s, [1, 2, 3, 7])
    for s in range(3, 5):
        t.extend("g", s, [1, 2, 3, 40, 41, 42, 43, 44, 45, 46, 47])
    return t


def test_multi_path_picks_branch_by_expected_accepted_length():
    t = _fork_tree()
    ctx = [1, 2, 3]
    lin = t.speculate("g", ctx, 6, max_spec_factor=4.0)
    # linear drafting follows the most frequent child: 7 (p = 3/5), which then ends
    assert lin.tokens == [7]
    assert lin.expected_accepted() == pytest.approx(0.6)
    multi = t.speculate("g", ctx, 6, top_k=4, max_spec_factor=4.0)
    # the less frequent branch (p = 2/5) runs on with certainty: 6 * 0.4 = 2.4 expected tokens
    assert multi.tokens == [40, 41, 42, 43, 44, 45]
    assert multi.probs == pytest.approx([0.4, 1, 1, 1, 1, 1])
    assert multi.expected_accepted() == pytest.approx(2.4)
    paths = t.speculate_paths("g", ctx, 6, top_k=4, max_spec_factor=4.0)
    assert [p.tokens for p in paths] == [[40, 41, 42, 43, 44, 45], [7]]
    assert all(len(p.tokens) <= 6 for p in paths)


def test_multi_path_keeps_at_most_top_k_paths():
    t = GroupDraftTrees()
    for s, nxt in enumerate([10, 11, 12, 13, 14, 15]):
        t.extend("g", s, [1, 2, nxt, nxt + 100])
    paths = t.speculate_paths("g", [0, 1, 2], 2, top_k=3, min_token_prob=0.01)
    assert 1 <= len(paths) <= 3
    assert len({tuple(p.tokens) for p in paths}) == len(paths)
    assert [p.score for p in paths] == sorted((p.score for p in paths), reverse=True)


def test_microbench_small():
    r = microbench(siblings=4, tokens=500, lookups=50)
    assert r["lookup_us"] > 0 and r["update_us_per_token"] > 0
    assert r["mean_draft_len"] > 0


def test_context_types_numpy_and_tuple():
    np = pytest.importorskip("numpy")
    t = GroupDraftTrees()
    t.extend("g", 0, np.array([1, 2, 3, 4, 5], dtype=np.int64))
    ref = t.speculate("g", [0, 1, 2, 3], 2)
    assert ref.tokens == [4, 5]
    assert t.speculate("g", (0, 1, 2, 3), 2) == ref
    assert t.speculate("g", np.array([0, 1, 2, 3]), 2) == ref
    assert t.speculate("g", [np.int64(x) for x in (0, 1, 2, 3)], 2) == ref
    assert t.speculate("g", [0, 1, 2, 3], 2, top_k=2).tokens == [4, 5]


# --- the engine-wide tree (vLLM suffix decoding's global cache, beside the group trees) ---------------------------

def test_engine_tree_drafts_across_groups_only_when_on():
    off = GroupDraftTrees(max_depth=32)
    on = GroupDraftTrees(max_depth=32, engine_seqs=8)
    for t in (off, on):
        t.extend("a", 0, [1, 2, 3, 4, 5, 6, 7, 8, 9])
        t.extend("b", 0, [50, 51])  # group b's own text shares nothing with a's
    assert off.speculate("b", [100, 1, 2, 3], 4).tokens == []
    assert on.speculate("b", [100, 1, 2, 3], 4).tokens == [4, 5, 6]
    assert on.speculate("b", [100, 1, 2, 3], 4, top_k=4).tokens == [4, 5, 6]
    assert on.stats()["engine_tree_wins"] == 2
    assert on.stats()["engine_seqs"] == 2 and on.stats()["engine_tokens"] == 11
    assert off.stats()["engine_seqs"] == 0


def test_engine_tree_loses_ties_and_lower_scores_to_the_group_tree():
    t = GroupDraftTrees(max_depth=32, engine_seqs=8)
    t.extend("a", 0, [1, 2, 3, 7, 7, 7])
    t.extend("a", 1, [1, 2, 3, 7, 7, 7])
    t.extend("b", 0, [1, 2, 3, 4, 5, 6])  # b's own group says 4 5 6 with certainty
    d = t.speculate("b", [0, 1, 2, 3], 3)
    # engine tree: 3 sequences after [1 2 3] -> 7 (2/3) and 4 (1/3): lower score than the group's certain 4 5 6
    assert d.tokens == [4, 5, 6]
    assert t.stats()["engine_tree_wins"] == 0
    u = GroupDraftTrees(max_depth=32, engine_seqs=8)
    u.extend("b", 0, [1, 2, 3, 4, 5, 6])  # the same text in both trees: equal scores, the group's draft is kept
    assert u.speculate("b", [0, 1, 2, 3], 3).tokens == [4, 5, 6]
    assert u.stats()["engine_tree_wins"] == 0


def test_engine_tree_keeps_released_groups_evicts_oldest_and_skips_unshared():
    t = GroupDraftTrees(max_depth=32, engine_seqs=2)
    t.extend("a", 0, [1, 2, 3, 4, 5])
    t.extend("a", 99, [60, 61, 62, 63], shared=False)  # a prompt: group tree only
    t.release_group("a")
    t.register_group("c")
    assert t.speculate("c", [9, 1, 2, 3], 2).tokens == [4, 5]  # a's response outlives its group
    assert t.speculate("c", [9, 60, 61], 2).tokens == []  # its prompt never entered the engine tree
    t.extend("b", 0, [20, 21, 22, 23])
    t.extend("b", 1, [30, 31, 32, 33])  # third sequence: a's (the oldest) is evicted
    assert t.speculate("c", [9, 1, 2, 3], 2).tokens == []
    assert t.speculate("c", [9, 30, 31], 2).tokens == [32, 33]
    t.remove_seq("b", 1)
    assert t.speculate("c", [9, 30, 31], 2).tokens == []
    assert t.stats()["engine_seqs"] == 1
    t.set_engine_seqs(0)
    assert t.speculate("c", [9, 20, 21], 2).tokens == []
    assert t.stats()["engine_seqs"] == 0
    with pytest.raises(ValueError, match="engine_seqs must be >= 0"):
        t.set_engine_seqs(-1)
