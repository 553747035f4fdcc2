"""Draft budgets for adaptive grouped speculative decoding (paper §3.4 / Appendix A.2, Algorithm 1 "MBA").

Notation (Leviathan et al., as in the paper):

* ``beta[i-1]`` (``i = 1..``) is the per-position acceptance probability of draft position ``i``: the
  probability that draft token ``i`` is accepted *given* that tokens ``1..i-1`` were accepted. With a constant
  ``beta`` = alpha this is the classic i.i.d. model.
* ``acc(i) = beta[0] * ... * beta[i-1]`` is the probability that the first ``i`` draft tokens are all accepted.
* With ``gamma`` draft tokens a verification step yields ``tau(gamma) = 1 + sum_{i<=gamma} acc(i)`` tokens per
  request (the accepted drafts plus the bonus/correction token); for constant alpha that is
  ``(1 - alpha^(gamma+1)) / (1 - alpha)``.
* ``T(B, gamma)`` is the target model's step time for a batch of ``B`` requests each verifying ``gamma`` drafts
  (``B * (gamma + 1)`` query tokens) and ``D(B, gamma)`` the drafting time. The time per generated token per
  request is ``T_SD(B, gamma) = (D(B, gamma) + T(B, gamma)) / tau(gamma)``, i.e. the paper's
  ``(1 - alpha)(D + T) / (1 - alpha^(gamma+1))``. SD pays only if ``T_SD(B, gamma) < T(B, 0)`` (the paper's
  ``T(B, 1)``: one query token per request).

MBA (Algorithm 1): compute ``gamma* = argmin_gamma T_SD(B, gamma)`` for the whole batch ``B = B_h + B_l`` and the
total draft budget ``Gamma* = gamma* * B``; if it cannot give every high-priority request (the groups' probes)
one draft token, speculation is off; otherwise the budget is handed out one draft position at a time, to the
high-priority class while ``lam`` times its marginal benefit exceeds the low-priority one's, else to the
low-priority class (see ``literal`` in :func:`mba_allocate` for the printed variant). The marginal benefit of raising a class from ``gamma`` to ``gamma + 1`` draft tokens is the
expected number of extra tokens per step it buys, ``B_class * (tau(gamma + 1) - tau(gamma)) = B_class *
acc(gamma + 1)``. (The paper prints it as a difference of acceptance terms; we read it as this gain in expected
accepted tokens, which is the quantity a marginal-benefit allocation compares.)

Per-request drafts (:func:`select_drafts`, what the engines run). MBA prices a *uniform* draft length from one
batch-wide acceptance curve. The group tree knows more: every candidate draft token comes with its own match
statistics, calibrated into an acceptance probability (:mod:`seer_verl.core.draft_acceptance`). The engine's
budget therefore ranks every candidate token of the batch by its expected accepted contribution (probes' tokens
weighted by ``lam``) and keeps the prefix of that ranking that minimises the step's time per generated token,
``(T(B, B + K) + c_spec [K > 0]) / (B + sum of the kept tokens' acceptance)``: the marginal-benefit rule applied
token by token, so confident drafts run even in a big batch, and nothing is drafted when no prefix pays, or when
the best one saves less than ``min_gain`` of the step's time per token (the estimates' margin of error).

Stdlib only; the step-time function is injected (e.g. :meth:`seer_verl.core.step_time.StepTimeModel.step_time`
bound to the engine's current KV), so the same code runs in the simulator and in a real engine's proposer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = [
    "DEFAULT_MIN_GAIN",
    "DraftTimeFn",
    "StepTimeFn",
    "acceptance_curve",
    "best_total_draft",
    "expected_tokens",
    "mba_allocate",
    "predicted_saving",
    "select_drafts",
    "t_sd",
]

#: ``select_drafts``'s default margin in the engines and the simulator (``seer.spec.min_gain``): the packaged CPU
#: step-time profile's linear fit misses measured verification steps by up to 4.7% at batch 8-16 (median 1.2%;
#: ``seer_verl/sim/data/step_cpu_smollm2_sd.json``), so a smaller predicted saving is within the model's error.
DEFAULT_MIN_GAIN = 0.05

#: ``step_time_fn(num_seqs, query_tokens) -> seconds`` of one target-model (verification) step.
StepTimeFn = Callable[[int, int], float]
#: ``draft_time_fn(num_seqs, gamma) -> seconds`` of drafting ``gamma`` tokens for ``num_seqs`` requests.
DraftTimeFn = Callable[[int, int], float]


def _check_beta(beta: Sequence[float]) -> None:
    for i, b in enumerate(beta):
        if not 0.0 <= b <= 1.0:
            raise ValueError(f"beta[{i}] must be a probability in [0, 1], got {b!r}")


def acceptance_curve(beta: Sequence[float], gamma: int) -> list[float]:
    """``[acc(1), ..., acc(gamma)]``: probability that the first ``i`` drafts are all accepted.

    Positions beyond ``len(beta)`` reuse the last entry (an empty ``beta`` accepts nothing).
    """
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    _check_beta(beta)
    out: list[float] = []
    p = 1.0
    for i in range(gamma):
        b = beta[i] if i < len(beta) else (beta[-1] if beta else 0.0)
        p *= b
        out.append(p)
    return out


def expected_tokens(beta: Sequence[float], gamma: int) -> float:
    """``tau(gamma)``: expected tokens produced per verification step with ``gamma`` draft tokens (>= 1)."""
    return 1.0 + sum(acceptance_curve(beta, gamma))


def t_sd(
    batch: int,
    gamma: int,
    beta: Sequence[float],
    step_time_fn: StepTimeFn,
    draft_time_fn: DraftTimeFn | None = None,
) -> float:
    """``T_SD(B, gamma)``: seconds per generated token per request with ``gamma`` drafts for all ``batch``."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    t = step_time_fn(batch, batch * (gamma + 1))
    if draft_time_fn is not None and gamma > 0:
        t += draft_time_fn(batch, gamma)
    return t / expected_tokens(beta, gamma)


def best_total_draft(
    batch: int,
    beta: Sequence[float],
    gamma_max: int,
    step_time_fn: StepTimeFn,
    draft_time_fn: DraftTimeFn | None = None,
) -> tuple[int, int]:
    """``(gamma*, Gamma*)``: the uniform draft length minimising ``T_SD(batch, gamma)`` over ``0..gamma_max``
    (ties go to the shorter draft) and the batch's total draft budget ``Gamma* = gamma* * batch``.
    ``batch == 0`` gives ``(0, 0)``."""
    if gamma_max < 0:
        raise ValueError(f"gamma_max must be >= 0, got {gamma_max}")
    if batch <= 0:
        return 0, 0
    best_g, best_t = 0, t_sd(batch, 0, beta, step_time_fn, draft_time_fn)
    for g in range(1, gamma_max + 1):
        t = t_sd(batch, g, beta, step_time_fn, draft_time_fn)
        if t < best_t * (1.0 - 1e-12):
            best_g, best_t = g, t
    return best_g, best_g * batch


def mba_allocate(
    B_h: int,
    B_l: int,
    beta: Sequence[float],
    gamma_max: int,
    lam: float,
    step_time_fn: StepTimeFn,
    draft_time_fn: DraftTimeFn | None = None,
    beta_l: Sequence[float] | None = None,
    literal: bool = False,
) -> tuple[int, int]:
    """Marginal-benefit-aware draft lengths ``(gamma_h, gamma_l)`` (paper Algorithm 1).

    Args:
        B_h: number of high-priority requests in the batch (the groups' probes).
        B_l: number of low-priority requests.
        beta: per-position acceptance probabilities (of the high-priority class; also of the low-priority class
            unless ``beta_l`` is given).
        gamma_max: longest draft (8 in the paper).
        lam: priority factor ``lambda >= 1`` (2 in the paper): the high class gets the next draft position while
            its marginal benefit exceeds ``lam`` times the low class's.
        step_time_fn: ``T(num_seqs, query_tokens)`` of the target model (the offline-profiled model).
        draft_time_fn: optional drafting cost ``D(num_seqs, gamma)`` (0 for an asynchronous draft server).
        beta_l: per-position acceptance of the low-priority class, if it differs (the total budget ``Gamma*`` then
            uses the batch-weighted mean of the two curves).
        literal: compare as printed in the paper's digest, ``benefit_h > lam * benefit_l``. By default the high
            class's benefit is weighted, ``lam * benefit_h > benefit_l``: the stated intent is that probes get
            *longer* drafts with the skew capped by ``lam`` (with geometric acceptance ``p`` the gap
            ``gamma_h - gamma_l`` settles near ``log(lam) / log(1/p)`` for equal class sizes); the literal
            comparison gives probes *shorter* drafts than the rest whenever ``lam > 1`` and the classes are
            equally large.

    Returns ``(0, 0)`` when speculation does not pay for the batch (``Gamma* < B_h``, or an empty batch).
    """
    if B_h < 0 or B_l < 0:
        raise ValueError(f"batch sizes must be >= 0, got B_h={B_h}, B_l={B_l}")
    if lam < 1:
        raise ValueError(f"lam must be >= 1, got {lam}")
    total = B_h + B_l
    if total == 0:
        return 0, 0
    acc_h = acceptance_curve(beta, gamma_max)
    acc_l = acceptance_curve(beta if beta_l is None else beta_l, gamma_max)
    beta_all: Sequence[float] = beta
    if beta_l is not None:  # the batch's mean per-position acceptance, for the total budget
        bh = [beta[i] if i < len(beta) else (beta[-1] if beta else 0.0) for i in range(gamma_max)]
        bl = [beta_l[i] if i < len(beta_l) else (beta_l[-1] if beta_l else 0.0) for i in range(gamma_max)]
        beta_all = [(B_h * h + B_l * low) / total for h, low in zip(bh, bl)]
    _, budget = best_total_draft(total, beta_all, gamma_max, step_time_fn, draft_time_fn)
    if budget == 0 or budget < B_h:
        return 0, 0
    if B_h > 0:
        g_h, g_l, remaining = 1, 0, budget - B_h
    else:
        g_h, g_l, remaining = 0, 0, budget
    while True:
        benefit_h = B_h * acc_h[g_h] if g_h < gamma_max and B_h > 0 else -1.0
        benefit_l = B_l * acc_l[g_l] if g_l < gamma_max and B_l > 0 else -1.0
        if literal:
            high_wins = benefit_h > lam * benefit_l
        else:
            high_wins = lam * benefit_h > benefit_l
        if B_h > 0 and g_h < gamma_max and remaining >= B_h and high_wins:
            g_h += 1
            remaining -= B_h
        elif B_l > 0 and g_l < gamma_max and remaining >= B_l:
            g_l += 1
            remaining -= B_l
        else:
            return g_h, g_l


def select_drafts(
    acc: Sequence[Sequence[float]],
    probe: Sequence[bool],
    step_time_fn: StepTimeFn,
    lam: float = 1.0,
    spec_overhead: float = 0.0,
    batch: int | None = None,
    min_gain: float = 0.0,
) -> list[int]:
    """Draft length per request for one engine step (per-token marginal benefit; see the module doc).

    Args:
        acc: per request, the probability that its candidate draft positions ``0..j`` are all accepted
            (non-increasing along each list; the candidate draft's length bounds the draft).
        probe: per request, whether it is its group's probe (high priority: its tokens rank ``lam`` times higher).
        step_time_fn: ``T(num_seqs, query_tokens)`` of a verification step on this engine.
        lam: probe priority factor (>= 1); it orders tokens but never makes a losing draft look profitable.
        spec_overhead: fixed seconds of any step that verifies drafts.
        batch: requests in the step, those without a candidate draft included (default ``len(acc)``): they share
            the step's time and each yields a token, so they set what a draft token must be worth.
        min_gain: the step drafts only if its best prefix is predicted to cut the time per generated token by at
            least this fraction (0 = any saving). The prediction rests on a fitted step time and calibrated
            acceptance, both estimates: a predicted saving smaller than their error is a coin flip that costs
            verification work either way, and the most promising of many noisy estimates is an overstated one.

    Returns the number of draft tokens to send per request (0 = none); all zeros when no draft pays.
    """
    if len(acc) != len(probe):
        raise ValueError(f"acc and probe must have one entry per request; got {len(acc)} and {len(probe)}")
    if lam < 1:
        raise ValueError(f"lam must be >= 1, got {lam}")
    if not 0.0 <= min_gain < 1.0:
        raise ValueError(f"min_gain must be in [0, 1), got {min_gain}")
    B = len(acc) if batch is None else int(batch)
    if B < len(acc):
        raise ValueError(f"batch={batch} is smaller than the number of requests with candidates ({len(acc)})")
    out = [0] * len(acc)
    if not acc:
        return out
    items: list[tuple[float, int, int, float]] = []
    for r, curve in enumerate(acc):
        w = lam if probe[r] else 1.0
        prev = 1.0
        for j, a in enumerate(curve):
            a = min(float(a), prev)  # enforce the prefix property against rounding
            if a <= 0.0:
                break
            items.append((-w * a, r, j, a))
            prev = a
    if not items:
        return out
    items.sort()  # best first; a request's positions keep their order (same weight, decreasing acceptance)
    base = step_time_fn(B, B)
    best_k, best = 0, base / B
    gained = 0.0
    for k, (_, _, _, a) in enumerate(items, start=1):
        gained += a
        t = (step_time_fn(B, B + k) + spec_overhead) / (B + gained)
        if t < best * (1.0 - 1e-9):
            best_k, best = k, t
    if best_k and best > (base / B) * (1.0 - min_gain):
        return out
    for _, r, _, _ in items[:best_k]:
        out[r] += 1
    return out


def predicted_saving(batch: int, drafted: int, expected_accepted: float, step_time_fn: StepTimeFn,
                     spec_overhead: float = 0.0) -> float:
    """Fraction of the time per generated token a step of ``batch`` requests is predicted to save by verifying
    ``drafted`` draft tokens of which ``expected_accepted`` are expected to be accepted (0 without drafts): the
    quantity :func:`select_drafts` compares with ``min_gain``."""
    if batch < 1 or drafted < 0 or expected_accepted < 0:
        raise ValueError(f"predicted_saving needs batch >= 1, drafted >= 0 and expected_accepted >= 0; got "
                         f"batch={batch}, drafted={drafted}, expected_accepted={expected_accepted}")
    if drafted == 0:
        return 0.0
    base = step_time_fn(batch, batch) / batch
    return 1.0 - ((step_time_fn(batch, batch + drafted) + spec_overhead) / (batch + expected_accepted)) / base
