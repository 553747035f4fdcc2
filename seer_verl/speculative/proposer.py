"""Engine-side grouped drafter: vLLM's suffix proposer, but drafting from the request's *group* tree.

:class:`GroupSuffixProposer` replaces vLLM 0.32's ``SuffixDecodingProposer`` inside the engine worker (the swap is
done by :mod:`seer_verl.speculative.worker_ext` at import time, without forking vLLM). vLLM keeps doing everything else:
it schedules the draft tokens, runs one verification forward per step and accepts or rejects every draft token
with its own rejection sampler, so the output distribution is exactly the model's (the draft carries no
probabilities, i.e. a one-hot proposal; accept with p_target(x), else resample from the residual).

Per step (``propose``), for every running request:

1. its group, sibling index, original prompt length and probe flag come from the Seer request id
   (:mod:`seer_verl.speculative.request_tag`); a non-Seer request is a group of its own (plain self-speculation);
2. the tokens it just produced are appended to its group's arctic suffix tree
   (:class:`~seer_verl.speculative.group_tree.GroupDraftTrees`), so siblings on this engine see them immediately; siblings
   on other engines arrive through :meth:`apply_increments` (fed by the grouped draft server, DGDS);
3. the accepted length of its previous draft updates the online per-position acceptance statistics;
4. the candidate draft is the best path of the group tree (multi-path with ``top_k > 1``), cut where the tree's
   own probability falls below ``min_token_prob``; each candidate token's tree statistics are calibrated into an
   acceptance probability learned from this engine's earlier verifications
   (:class:`~seer_verl.core.draft_acceptance.DraftAcceptance`);
5. the marginal-benefit budget (paper §5.3, applied per token: :func:`seer_verl.core.draft_budget.select_drafts`)
   keeps the candidate tokens that lower the step's time per generated token under the engine's step-time model,
   probes first (``lam``) — nothing when speculation does not pay — or every candidate is sent up to
   ``fixed_gamma`` (``mode="fixed"``, the comparison row).

The step-time model configured by the service is only the prior: every clean decode step (no prefill in it) feeds
an online fit of this engine's own cost (:class:`~seer_verl.core.step_time_fit.OnlineStepTimeFit`), so a draft
token is priced at what verification really costs here.

All state lives in the worker process and is touched only from the model runner's thread (vLLM runs
``collective_rpc`` utility calls on the same thread between steps), so there is no locking.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from seer_verl.core.draft_acceptance import DraftAcceptance
from seer_verl.core.draft_margin import BandedDraftMargin, realised_saving
from seer_verl.speculative.group_tree import GroupDraftTrees
from seer_verl.speculative.request_tag import parse
from seer_verl.speculative.settings import DrafterSettings

try:  # vLLM is only needed inside an engine worker; the class below is also unit-tested with fakes.
    from vllm.v1.spec_decode.suffix_decoding import SuffixDecodingProposer as _Base
except Exception:  # pragma: no cover - no vLLM
    _Base = object

__all__ = ["PROMPT_SEQ", "AcceptanceStats", "GroupSuffixProposer"]

#: seq_id under which a group's prompt is added to its tree (siblings are 0..G-1).
PROMPT_SEQ = 1_000_000

@dataclass
class AcceptanceStats:
    """Online per-position acceptance ``beta[j]`` = P(draft token j+1 is accepted | tokens 1..j were), j < gamma_max
    (the conditional form :mod:`seer_verl.core.draft_budget` takes).

    Exponentially decayed counts (half-life ~``halflife`` observations per position) with a weak prior, so the
    estimate follows the rollout from bulk to tail without jumping on a handful of samples.
    """

    gamma_max: int
    halflife: float = 2000.0
    prior: float = 0.5
    prior_weight: float = 4.0
    reached: list[float] = field(default_factory=list)
    accepted: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.reached = [0.0] * self.gamma_max
        self.accepted = [0.0] * self.gamma_max
        self._decay = 0.5 ** (1.0 / self.halflife)

    def record(self, draft_len: int, num_accepted: int) -> None:
        """A draft of ``draft_len`` tokens of which the first ``num_accepted`` were accepted."""
        for j in range(min(draft_len, num_accepted + 1, self.gamma_max)):
            self.reached[j] = self.reached[j] * self._decay + 1.0
            self.accepted[j] = self.accepted[j] * self._decay + (1.0 if j < num_accepted else 0.0)

    def beta(self) -> list[float]:
        return [(a + self.prior_weight * self.prior) / (r + self.prior_weight)
                for a, r in zip(self.accepted, self.reached)]


@dataclass
class _Req:
    gid: str
    sib: int
    prompt_len: int
    probe: bool
    last_draft: int = 0
    last_keys: list[tuple[int, int, int]] = field(default_factory=list)  # calibration bins of the last draft


class GroupSuffixProposer(_Base):
    """Drop-in for vLLM's ``SuffixDecodingProposer`` (same constructor and ``propose`` signature)."""

    def __init__(self, vllm_config: Any):
        spec = vllm_config.speculative_config
        self.num_speculative_tokens = int(spec.num_speculative_tokens)
        self.max_model_len = int(vllm_config.model_config.max_model_len)
        self.max_tree_depth = int(spec.suffix_decoding_max_tree_depth)
        self.settings = DrafterSettings(gamma_max=self.num_speculative_tokens, fixed_gamma=self.num_speculative_tokens,
                                        min_token_prob=float(spec.suffix_decoding_min_token_prob))
        self._init_state()

    def _init_state(self) -> None:
        self.trees = GroupDraftTrees(max_depth=max(2, self.max_tree_depth))
        self.acceptance = AcceptanceStats(self.num_speculative_tokens)
        self.calibration = DraftAcceptance()
        self._reqs: dict[str, _Req] = {}
        self._group_seen: dict[str, float] = {}
        self._step_log: list[tuple[float, int, int, int, int, int, int, float, float]] = []
        self._cost = None  # OnlineStepTimeFit once configured with a step-time model
        self._margin = BandedDraftMargin(min_gain=self.settings.min_gain, bands=self.settings.margin_bands)
        self._pending: tuple[int, float] | None = None  # (rows, predicted saving) of the step drafted last
        self._prev_t0: float | None = None
        self._trees_seen = (0, 0)  # (drafts looked up, of them from the engine-wide tree) at the last take_stats
        self.suspended = False
        self._totals = {"steps": 0, "steps_sd_on": 0, "draft_tokens": 0, "accepted_tokens": 0, "drafts": 0,
                        "propose_s": 0.0, "increments": 0}

    # ----------------------------------------------------------------------------------------- control (RPCs)
    def configure(self, settings: dict[str, Any]) -> None:
        s = DrafterSettings.from_dict(settings, base=self.settings)
        s.gamma_max = min(int(s.gamma_max), self.num_speculative_tokens)
        s.fixed_gamma = min(int(s.fixed_gamma), s.gamma_max)
        self.settings = s
        self.trees.set_engine_seqs(s.engine_seqs)
        self._margin = BandedDraftMargin(min_gain=s.min_gain, bands=int(s.margin_bands))
        if s.step_time:  # the prior of the engine's cost model; the fit then follows this engine's own steps
            from seer_verl.core.step_time_fit import OnlineStepTimeFit

            st = s.step_time
            self._cost = OnlineStepTimeFit((float(st.get("c0", 0.0)), float(st.get("c_seq", 0.0)),
                                            float(st.get("c_tok", 0.0))),
                                           spec_overhead=float(st.get("c_spec", 0.0)))
        else:
            self._cost = None
        if len(self.acceptance.reached) != s.gamma_max:
            self.acceptance = AcceptanceStats(s.gamma_max)

    def reset(self) -> None:
        """Back to the state of a freshly started engine: speculation off, no trees, no statistics (a new user of
        the same engines, e.g. the next bench policy, must not inherit the previous one's settings or evidence)."""
        self.settings = DrafterSettings(gamma_max=self.num_speculative_tokens, fixed_gamma=self.num_speculative_tokens,
                                        min_token_prob=self.settings.min_token_prob)
        self._init_state()

    def suspend(self, on: bool) -> None:
        """Speculation off (``True``) while the draft server is unreachable; back to the configured mode after."""
        self.suspended = bool(on)

    def apply_increments(self, increments: list[tuple[str, int, int, list[int]]]) -> int:
        """Tokens of siblings generated on other engines: ``(gid, sibling, start_offset, tokens)``; idempotent."""
        n = 0
        for gid, sib, start, toks in increments:
            n += self._extend_at(gid, int(sib), int(start), toks)
            self._group_seen[gid] = time.monotonic()
        self._totals["increments"] += n
        return n

    def release_groups(self, gids: list[str]) -> None:
        for gid in gids:
            self.trees.release_group(gid)
            self._group_seen.pop(gid, None)

    def take_stats(self) -> dict[str, Any]:
        """Totals plus the per-step log since the last call (then cleared)."""
        trees = self.trees.stats()
        # drafts looked up since the last call, and how many of them came from the engine-wide tree
        now = (trees["speculate_nonempty"], trees["engine_tree_wins"])
        drafts_since, engine_since = now[0] - self._trees_seen[0], now[1] - self._trees_seen[1]
        self._trees_seen = now
        out = {"totals": dict(self._totals), "beta": self.acceptance.beta(), "steps": self._step_log,
               "calibration": self.calibration.table(), "drafts_looked_up": drafts_since,
               "drafts_from_engine_tree": engine_since,
               "trees": trees, "settings": self.settings.as_dict(),
               "cost_fit": None if self._cost is None else {"c0_c_seq_c_tok": self._cost.coefficients,
                                                            "recorded": self._cost.recorded},
               "margin": {"bands": self._margin.table(), "recorded": self._margin.recorded}}
        self._step_log = []
        return out

    # ------------------------------------------------------------------------------------------- per step
    def _extend_at(self, gid: str, sib: int, start: int, toks: Any) -> int:
        """Append ``toks`` (response positions ``start..``) to sibling ``sib`` of ``gid``, skipping what it has."""
        have = self.trees.seq_len(gid, sib)
        end = start + len(toks)
        if start > have or end <= have:  # a gap (an earlier piece will come) or nothing new
            return 0
        new = [int(t) for t in toks[have - start:]]
        self.trees.extend(gid, sib, new)
        return len(new)

    def _fixed_length(self) -> int | None:
        """Draft length of every request this step when it does not depend on the drafts (0 = no speculation);
        ``None`` in adaptive mode (per-request lengths from :func:`~seer_verl.core.draft_budget.select_drafts`)."""
        s = self.settings
        if s.mode == "off" or s.gamma_max <= 0 or self.suspended:
            return 0
        if s.mode in ("fixed", "profile") or self._cost is None:
            return s.fixed_gamma
        return None

    def propose(self, num_speculative_tokens: int, input_batch: Any, sampled_token_ids: list[list[int]],
                slot_mappings: Any = None) -> list[list[int]]:
        t0 = time.perf_counter()
        now = time.monotonic()
        s = self.settings
        rows: list[tuple[int, _Req, int] | None] = []
        b_h = b_l = 0
        accepted_now = verified = 0
        clean = True  # the step just run was pure decode/verification (no prefill in it): it may feed the cost fit
        for i, sampled in enumerate(sampled_token_ids):
            if not sampled:
                rows.append(None)
                clean = False
                continue
            req_id = input_batch.req_ids[i]
            n = int(input_batch.num_tokens_no_spec[i])
            st = self._reqs.get(req_id)
            if st is None:
                st = self._start(req_id, input_batch, i)
                clean = False
            else:  # the previous step's draft: len(sampled) - 1 of it was accepted (the last token is the bonus)
                verified += st.last_draft
                a = min(len(sampled) - 1, st.last_draft)
                if st.last_draft:
                    self.acceptance.record(st.last_draft, a)
                    self.calibration.record(st.last_keys, a)
                    accepted_now += a
            # positions of the new tokens within the response
            self._extend_at(st.gid, st.sib, n - len(sampled) - st.prompt_len, sampled)
            self._group_seen[st.gid] = now
            if st.probe:
                b_h += 1
            else:
                b_l += 1
            rows.append((i, st, n))
        if self._cost is not None and clean and self._prev_t0 is not None and b_h + b_l > 0:
            seconds = t0 - self._prev_t0
            base = self._cost.predict(b_h + b_l, b_h + b_l)  # before this step moves the fit
            if self._cost.add(b_h + b_l, b_h + b_l + verified, seconds) and self._pending is not None \
                    and verified and self._pending[0] == b_h + b_l:  # the drafted step's outcome, same rows
                self._margin.record(b_h + b_l, self._pending[1],
                                    realised_saving(b_h + b_l, accepted_now, seconds, base))
        self._pending = None
        self._margin.tick()
        self._prev_t0 = t0
        fixed = self._fixed_length()
        # the bar this step's drafts must clear (the learnt margin of this batch size's band)
        min_gain = self._margin.margin(max(1, b_h + b_l)) if s.learn_margin else s.min_gain
        drafts: list[list[int]] = [[] for _ in rows]
        cands: list[tuple[int, _Req, list[int], list[tuple[int, int, int]]]] = []
        for r in rows:
            if r is None:
                continue
            i, st, n = r
            cap = min(s.gamma_max if fixed is None else fixed, num_speculative_tokens, self.max_model_len - n - 1)
            st.last_draft, st.last_keys = 0, []
            if cap <= 0:
                continue
            if s.mode == "profile":
                drafts[i] = [int(sampled_token_ids[i][-1])] * cap
                continue
            start = max(0, n - self.max_tree_depth)
            d = self.trees.speculate(st.gid, input_batch.token_ids_cpu[i, start:n].tolist(), cap,
                                     min_token_prob=s.min_token_prob, top_k=s.top_k)
            if d.tokens:
                cands.append((i, st, d.tokens[:cap], self.calibration.keys(d.probs[:cap], d.match_len)))
        if fixed is None and cands:  # adaptive: per-token marginal benefit over the whole batch
            from seer_verl.core.draft_budget import predicted_saving, select_drafts

            curves = [self.calibration.cumulative(k) for _, _, _, k in cands]
            lens = select_drafts(curves, [st.probe for _, st, _, _ in cands], self._cost.predict, lam=s.lam,
                                 spec_overhead=self._cost.spec_overhead, batch=b_h + b_l,
                                 min_gain=min_gain)
            if any(lens):  # what the budget expects of this step, to be compared with what it realises
                self._pending = (b_h + b_l, predicted_saving(
                    b_h + b_l, sum(lens), sum(sum(c[:m]) for c, m in zip(curves, lens)), self._cost.predict,
                    self._cost.spec_overhead))
        else:
            lens = [len(t) for _, _, t, _ in cands]
        for (i, st, toks, keys), m in zip(cands, lens):
            drafts[i] = toks[:m]
            st.last_keys = keys[:m]
        g_h = g_l = 0  # the longest draft of each class this step
        for r in rows:
            if r is not None:
                i, st, _ = r
                st.last_draft = len(drafts[i])
                if st.probe:
                    g_h = max(g_h, st.last_draft)
                else:
                    g_l = max(g_l, st.last_draft)
        drafted = sum(len(d) for d in drafts)
        # forget requests that left the batch (finished, aborted or preempted); they restart on next sight
        live = input_batch.req_id_to_index
        for req_id in [r for r in self._reqs if r not in live]:
            gone = self._reqs.pop(req_id)
            if gone.gid.startswith("req:"):  # a non-Seer request's private tree
                self.release_groups([gone.gid])
        self._expire_groups(now)
        t1 = time.perf_counter()
        n_rows = b_h + b_l
        self._totals["steps"] += 1
        self._totals["steps_sd_on"] += int(drafted > 0)
        self._totals["draft_tokens"] += drafted
        self._totals["accepted_tokens"] += accepted_now
        self._totals["drafts"] += sum(1 for d in drafts if d)
        self._totals["propose_s"] += t1 - t0
        # (wall time, rows, probes, draft tokens proposed now, accepted from last step's drafts, g_h, g_l, the
        # saving the budget predicts for this step's drafts, the margin it drafted against)
        self._step_log.append((time.time(), n_rows, b_h, drafted, accepted_now, g_h, g_l,
                               round(self._pending[1], 4) if self._pending else 0.0,
                               round(min_gain, 4)))
        return drafts

    def _start(self, req_id: str, input_batch: Any, i: int) -> _Req:
        tag = parse(req_id)
        index = input_batch.req_id_to_index[req_id]
        n_prompt = int(input_batch.num_prompt_tokens[index])
        if tag is None:
            st = _Req(gid=f"req:{req_id}", sib=0, prompt_len=n_prompt, probe=False)
        else:
            st = _Req(gid=tag.gid, sib=tag.sibling, prompt_len=tag.prompt_len, probe=tag.probe)
        if not self.trees.has_group(st.gid) or self.trees.seq_len(st.gid, PROMPT_SEQ) == 0:
            self.trees.extend(st.gid, PROMPT_SEQ, input_batch.token_ids_cpu[i, :st.prompt_len].tolist(), shared=False)
        if n_prompt > st.prompt_len:  # a continuation chunk: its earlier response tokens are in its prompt
            self._extend_at(st.gid, st.sib, 0, input_batch.token_ids_cpu[i, st.prompt_len:n_prompt].tolist())
        self._reqs[req_id] = st
        return st

    def _expire_groups(self, now: float) -> None:
        ttl = self.settings.group_ttl_s
        if ttl <= 0 or len(self._group_seen) < 64:
            return
        for gid in [g for g, t in self._group_seen.items() if now - t > ttl]:
            self.release_groups([gid])

    def load_model(self, *args: Any, **kwargs: Any) -> None:  # no draft model
        pass
