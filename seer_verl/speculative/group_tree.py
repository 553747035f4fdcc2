"""Grouped draft trees for Seer's adaptive grouped speculative decoding (paper §3.4, DGDS).

One arctic-inference suffix tree (``arctic_inference.suffix_decoding._C.SuffixTree``) per GRPO group: every
sibling's response tokens are appended under its own ``seq_id``, so a request drafts from the text its siblings
(and it itself) have already produced. This module only wraps the native tree; it never builds a suffix tree of
its own, and imports nothing but the native extension and the standard library (no vLLM, no verl), so it can
live in a draft-server actor or in an engine worker alike.

Probabilities. arctic's draft carries, per token, the *cumulative* probability of the path up to that token
(frequency statistics: ``child.count / node.count`` multiplied along the path) and ``score`` = their sum.
:class:`Draft` stores the *per-position conditional* probability instead (``probs[j]`` = estimated probability
that token j is right given tokens < j are), so ``expected_accepted() = sum_j prod(probs[:j+1])`` equals arctic's
score for a linear draft.

Caveat (c/(c+1)): when the requesting sibling's own in-progress sequence is in the group tree (it normally is),
it counts once in every node on its own path, so a continuation seen in c other siblings gets probability at most
c/(c+1) (0.5 with a single other sibling). ``min_token_prob`` must be chosen with that in mind.

Multi-path drafting (paper: "top-k highest-scoring branches at each fork"). With ``top_k > 1`` arctic is asked
for its *tree* draft (``use_tree_spec=True``, best-first expansion with a budget of ``top_k * max_spec_tokens``
nodes), the draft tree is enumerated into root-to-leaf paths (each cut to ``max_spec_tokens``), the ``top_k``
best by score are kept (arctic's greedy linear draft is always a candidate too), and the single path with the
largest expected accepted length is returned. vLLM 0.32 verifies only linear drafts (one token chain per
request, no tree attention on CPU), so the branches cannot all be verified at once; choosing the branch by
expected accepted length is what multi-path can buy under linear verification. :meth:`speculate_paths` returns
all kept paths for tree-verification studies (the offline replay uses it to bound what tree verification would
give).

Engine-wide tree (vLLM suffix decoding's "global cache"). With ``engine_seqs > 0`` every sequence appended to any
group (prompts excepted: ``shared=False``) is also appended to one tree of the whole engine, which keeps the last
``engine_seqs`` sequences (FIFO eviction, across batches: releasing a group does not drop its text from it). A
lookup drafts from both trees and keeps the draft with the higher score, ties to the group tree: arctic's own rule
for its per-request and global trees. The engine tree finds text shared *across* prompts (answer phrasing, format,
a loop another request fell into) that a group tree cannot.

Not thread-safe by design beyond a per-instance lock around the native calls (cheap; the draft server is a
single-threaded actor).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from collections import OrderedDict
from dataclasses import dataclass, field

from arctic_inference.suffix_decoding._C import SuffixTree

__all__ = ["EMPTY_DRAFT", "Draft", "GroupDraftTrees", "microbench"]


@dataclass(frozen=True)
class Draft:
    tokens: list[int]  # a linear draft (may be empty)
    probs: list[float]  # per-position conditional probability (tree frequency stats), len == len(tokens)
    score: float  # arctic's score (sum of cumulative path probabilities)
    match_len: int  # length of the context suffix matched in the tree

    def expected_accepted(self) -> float:
        """Expected number of accepted draft tokens if ``probs`` were exact: ``sum_j prod(probs[:j+1])``."""
        total, cum = 0.0, 1.0
        for p in self.probs:
            cum *= p
            total += cum
        return total

    def __len__(self) -> int:
        return len(self.tokens)


EMPTY_DRAFT = Draft([], [], 0.0, 0)


def _conditional(cum: Sequence[float]) -> list[float]:
    out, prev = [], 1.0
    for c in cum:
        out.append(min(1.0, c / prev) if prev > 0 else 0.0)
        prev = c
    return out


@dataclass
class _Group:
    tree: SuffixTree
    lens: dict[int, int] = field(default_factory=dict)


class GroupDraftTrees:
    """One arctic suffix tree per group; siblings are ``seq_id``s inside it."""

    def __init__(self, max_depth: int = 64, max_match_len: int | None = None, engine_seqs: int = 0):
        """``max_depth``: arctic's tree depth (a matched suffix plus its draft never exceed it). ``max_match_len``:
        the longest context suffix matched (Seer's ``pattern_lookup_max``; default ``min(max_depth - 1, 32)``).
        arctic walks the tree from the root once per candidate match length, so a lookup costs about
        ``max_match_len**2 / 2`` node steps: 63 costs ~3x more than 32. On recorded SmolLM2 rollouts (``seer-verl
        replay table --max-match-len``) 16, 32 and 63 gave identical drafts' acceptance. ``engine_seqs``: sequences
        kept in the engine-wide tree (0 = group trees only; see the module doc and :meth:`set_engine_seqs`)."""
        if max_depth < 2:
            raise ValueError(f"max_depth must be >= 2, got {max_depth}")
        self.max_depth = int(max_depth)
        mm = min(self.max_depth - 1, 32) if max_match_len is None else int(max_match_len)
        if not 1 <= mm <= self.max_depth - 1:
            raise ValueError(f"max_match_len must be in [1, max_depth - 1 = {self.max_depth - 1}], got {mm}")
        self.max_match_len = mm
        self._groups: dict[str, _Group] = {}
        self._lock = threading.Lock()
        self._extend_calls = 0
        self._extend_tokens = 0
        self._extend_ns = 0
        self._spec_calls = 0
        self._spec_ns = 0
        self._spec_nonempty = 0
        self._spec_tokens = 0
        self._engine_tree: SuffixTree | None = None
        self._engine_ids: OrderedDict[tuple[str, int], int] = OrderedDict()
        self._engine_lens: dict[int, int] = {}
        self._next_engine_id = 0
        self.engine_seqs = 0
        self._engine_wins = 0
        self.set_engine_seqs(engine_seqs)

    # --- the engine-wide tree ---------------------------------------------------------------------------------
    def set_engine_seqs(self, n: int) -> None:
        """Keep the last ``n`` sequences in the engine-wide tree (0 drops it). Shrinking evicts the oldest."""
        n = int(n)
        if n < 0:
            raise ValueError(f"engine_seqs must be >= 0, got {n}")
        with self._lock:
            self.engine_seqs = n
            if n == 0:
                self._engine_tree = None
                self._engine_ids.clear()
                self._engine_lens.clear()
                return
            if self._engine_tree is None:
                self._engine_tree = SuffixTree(self.max_depth)
            self._evict_engine(n)

    def _evict_engine(self, keep: int) -> None:
        while len(self._engine_ids) > keep:
            _, sid = self._engine_ids.popitem(last=False)
            if self._engine_lens.pop(sid, 0) > 0:
                self._engine_tree.remove(sid)

    def _engine_extend(self, key: tuple[str, int], toks: list[int]) -> None:
        sid = self._engine_ids.get(key)
        if sid is None:
            sid = self._next_engine_id
            self._next_engine_id = (self._next_engine_id + 1) & 0x7FFFFFFF
            self._engine_ids[key] = sid
            self._evict_engine(self.engine_seqs)
        self._engine_tree.extend(sid, toks)
        self._engine_lens[sid] = self._engine_lens.get(sid, 0) + len(toks)

    def _engine_remove(self, key: tuple[str, int]) -> None:
        sid = self._engine_ids.pop(key, None)
        if sid is not None and self._engine_lens.pop(sid, 0) > 0:
            self._engine_tree.remove(sid)

    # --- groups -----------------------------------------------------------------------------------------------
    def register_group(self, gid: str) -> None:
        with self._lock:
            if gid not in self._groups:
                self._groups[gid] = _Group(SuffixTree(self.max_depth))

    def release_group(self, gid: str) -> None:
        with self._lock:
            self._groups.pop(gid, None)

    def has_group(self, gid: str) -> bool:
        return gid in self._groups

    def groups(self) -> list[str]:
        return list(self._groups)

    # --- updates ----------------------------------------------------------------------------------------------
    def extend(self, gid: str, seq_id: int, tokens: Sequence[int], shared: bool = True) -> None:
        """Append ``tokens`` (new response tokens of sibling ``seq_id``) to group ``gid`` (registers it); with
        ``shared`` also to the engine-wide tree, when there is one (a group's prompt goes in with ``shared=False``)."""
        toks = [int(t) for t in tokens]
        with self._lock:
            g = self._groups.get(gid)
            if g is None:
                g = self._groups[gid] = _Group(SuffixTree(self.max_depth))
            t0 = time.perf_counter_ns()
            if toks:
                g.tree.extend(int(seq_id), toks)
                if shared and self._engine_tree is not None:
                    self._engine_extend((gid, int(seq_id)), toks)
            self._extend_ns += time.perf_counter_ns() - t0
            g.lens[int(seq_id)] = g.lens.get(int(seq_id), 0) + len(toks)
            self._extend_calls += 1
            self._extend_tokens += len(toks)

    def remove_seq(self, gid: str, seq_id: int) -> None:
        """Drop one sibling's sequence from its group's tree (e.g. an aborted request)."""
        with self._lock:
            g = self._groups.get(gid)
            if g is not None and int(seq_id) in g.lens:
                if g.lens[int(seq_id)] > 0:
                    g.tree.remove(int(seq_id))
                del g.lens[int(seq_id)]
            if self._engine_tree is not None:
                self._engine_remove((gid, int(seq_id)))

    def seq_len(self, gid: str, seq_id: int) -> int:
        g = self._groups.get(gid)
        return 0 if g is None else g.lens.get(int(seq_id), 0)

    # --- drafting ---------------------------------------------------------------------------------------------
    def speculate(
        self,
        gid: str,
        context: Sequence[int],
        max_spec_tokens: int,
        *,
        min_token_prob: float = 0.1,
        top_k: int = 1,
        max_spec_factor: float = 1.0,
    ) -> Draft:
        """A linear draft for the sequence whose tail is ``context`` (prompt + response, last <= max_depth tokens).

        ``top_k == 1``: arctic's linear draft (follow the most frequent child while the path probability stays
        >= ``min_token_prob``; best match length by score). ``top_k > 1``: multi-path (see the module doc); the
        returned path is the kept path with the largest expected accepted length.
        """
        if top_k <= 1:  # fast path: one native call, no path bookkeeping
            g = self._groups.get(gid)
            if g is None or max_spec_tokens <= 0:
                return EMPTY_DRAFT
            ctx = context[-(self.max_match_len + 1):]
            if len(ctx) < 2:
                return EMPTY_DRAFT
            if not isinstance(ctx, list):
                ctx = [int(t) for t in ctx]
            with self._lock:
                t0 = time.perf_counter_ns()
                args = (int(max_spec_tokens), float(max_spec_factor), 0.0, float(min_token_prob), False)
                try:
                    d = g.tree.speculate(ctx, *args)
                except TypeError:  # e.g. numpy integers in a list
                    ctx = [int(t) for t in ctx]
                    d = g.tree.speculate(ctx, *args)
                if self._engine_tree is not None:
                    e = self._engine_tree.speculate(ctx, *args)
                    if e.score > d.score:  # arctic's rule between its request and global trees (ties: group)
                        d = e
                        self._engine_wins += 1
                self._spec_ns += time.perf_counter_ns() - t0
                self._spec_calls += 1
            if not d.token_ids:
                return EMPTY_DRAFT
            self._spec_nonempty += 1
            self._spec_tokens += len(d.token_ids)
            return Draft(list(d.token_ids), _conditional(d.probs), float(d.score), int(d.match_len))
        paths = self.speculate_paths(gid, context, max_spec_tokens, min_token_prob=min_token_prob, top_k=top_k,
                                     max_spec_factor=max_spec_factor)
        if not paths:
            return EMPTY_DRAFT
        return max(paths, key=lambda d: (d.expected_accepted(), -len(d.tokens)))

    def speculate_paths(
        self,
        gid: str,
        context: Sequence[int],
        max_spec_tokens: int,
        *,
        min_token_prob: float = 0.1,
        top_k: int = 1,
        max_spec_factor: float = 1.0,
    ) -> list[Draft]:
        """Candidate linear drafts, best first by score: arctic's linear draft alone for ``top_k == 1``; for
        ``top_k > 1`` up to ``top_k`` distinct root-to-leaf paths of arctic's tree draft and its linear draft."""
        g = self._groups.get(gid)
        if g is None or max_spec_tokens <= 0:
            return []
        # arctic tries match lengths 1 .. len(ctx) - 1
        ctx = [int(t) for t in context[-(self.max_match_len + 1):]]
        if len(ctx) < 2:  # arctic matches suffixes of length 1 .. len(ctx)-1
            return []
        with self._lock:
            t0 = time.perf_counter_ns()
            lin = g.tree.speculate(ctx, int(max_spec_tokens), float(max_spec_factor), 0.0, float(min_token_prob),
                                   False)
            if self._engine_tree is not None:
                e = self._engine_tree.speculate(ctx, int(max_spec_tokens), float(max_spec_factor), 0.0,
                                                float(min_token_prob), False)
                if e.score > lin.score:
                    lin = e
                    self._engine_wins += 1
            tree = None
            if top_k > 1:
                tree = g.tree.speculate(ctx, int(max_spec_tokens) * int(top_k), float(max_spec_factor), 0.0,
                                        float(min_token_prob), True)
            self._spec_ns += time.perf_counter_ns() - t0
            self._spec_calls += 1
        out: list[Draft] = []
        if lin.token_ids:
            out.append(Draft(list(lin.token_ids), _conditional(lin.probs), float(lin.score), int(lin.match_len)))
        if tree is not None and tree.token_ids:
            seen = {tuple(d.tokens) for d in out}
            for toks, cum in _tree_paths(tree.token_ids, tree.parents, tree.probs, max_spec_tokens):
                if tuple(toks) not in seen:
                    seen.add(tuple(toks))
                    out.append(Draft(toks, _conditional(cum), float(sum(cum)), int(tree.match_len)))
            out.sort(key=lambda d: d.score, reverse=True)
            del out[top_k:]
        if out:
            self._spec_nonempty += 1
            self._spec_tokens += len(out[0].tokens)
        return out

    # --- introspection ----------------------------------------------------------------------------------------
    def stats(self) -> dict:
        seqs = sum(len(g.lens) for g in self._groups.values())
        toks = sum(sum(g.lens.values()) for g in self._groups.values())
        return {
            "groups": len(self._groups),
            "sequences": seqs,
            "tokens": toks,
            "extend_calls": self._extend_calls,
            "extend_tokens": self._extend_tokens,
            "extend_s": self._extend_ns / 1e9,
            "extend_us_per_token": self._extend_ns / 1e3 / self._extend_tokens if self._extend_tokens else 0.0,
            "speculate_calls": self._spec_calls,
            "speculate_s": self._spec_ns / 1e9,
            "speculate_us_per_call": self._spec_ns / 1e3 / self._spec_calls if self._spec_calls else 0.0,
            "speculate_nonempty": self._spec_nonempty,
            "speculate_mean_draft_len": self._spec_tokens / self._spec_nonempty if self._spec_nonempty else 0.0,
            "engine_seqs": len(self._engine_ids),
            "engine_tokens": sum(self._engine_lens.values()),
            "engine_tree_wins": self._engine_wins,
        }


def _tree_paths(token_ids: Sequence[int], parents: Sequence[int], cum_probs: Sequence[float],
                max_len: int) -> list[tuple[list[int], list[float]]]:
    """Root-to-leaf paths of an arctic tree draft (``parents[i]`` < i, -1 for a root), each cut to ``max_len``."""
    n = len(token_ids)
    has_child = [False] * n
    for p in parents:
        if p >= 0:
            has_child[p] = True
    paths = []
    for leaf in range(n):
        if has_child[leaf]:
            continue
        chain = []
        i = leaf
        while i >= 0:
            chain.append(i)
            i = parents[i]
        chain.reverse()
        chain = chain[:max_len]
        paths.append(([int(token_ids[i]) for i in chain], [float(cum_probs[i]) for i in chain]))
    return paths


def microbench(siblings: int = 16, tokens: int = 4000, lookups: int = 2000, max_spec_tokens: int = 8,
               top_k: int = 1, max_depth: int = 64, max_match_len: int | None = None, vocab: int = 32000,
               mutate: float = 0.1, seed: int = 0, repeats: int = 3) -> dict:
    """Draft lookup µs per request and tree update µs per token for one group of ``siblings`` x ``tokens``.

    Siblings are noisy copies of one base sequence (each token replaced with probability ``mutate``), so the
    tree has long shared paths and many forks, as a group of similar responses has. Updates are appended in
    16-token chunks, interleaved across siblings (as rollouts arrive); lookups use the last ``max_depth`` tokens
    at random positions of random siblings."""
    rng = random.Random(seed)
    base = [rng.randrange(vocab) for _ in range(tokens)]
    seqs = [[t if rng.random() > mutate else rng.randrange(vocab) for t in base] for _ in range(siblings)]
    trees = GroupDraftTrees(max_depth, max_match_len)
    chunk = 16
    t0 = time.perf_counter()
    for start in range(0, tokens, chunk):
        for s in range(siblings):
            trees.extend("g", s, seqs[s][start:start + chunk])
    update_s = time.perf_counter() - t0
    ctxs = []
    for _ in range(lookups):
        s = rng.randrange(siblings)
        pos = rng.randrange(max_depth, tokens)
        ctxs.append(seqs[s][pos - max_depth:pos])
    lookup_s = float("inf")  # best of `repeats` passes: the host is shared, the minimum is the least disturbed
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        lens = 0
        for c in ctxs:
            lens += len(trees.speculate("g", c, max_spec_tokens, top_k=top_k))
        lookup_s = min(lookup_s, time.perf_counter() - t0)
    return {
        "siblings": siblings,
        "tokens_per_sibling": tokens,
        "top_k": top_k,
        "max_spec_tokens": max_spec_tokens,
        "max_match_len": trees.max_match_len,
        "lookup_us": lookup_s / lookups * 1e6,
        "update_us_per_token": update_s / (siblings * tokens) * 1e6,
        "mean_draft_len": lens / lookups,
    }


if __name__ == "__main__":  # pragma: no cover
    for mm in (None, 32, 16):
        for k in (1, 4):
            print(microbench(top_k=k, max_match_len=mm))
