"""Statistical losslessness check for speculative decoding: are SD-on samples distributed as SD-off samples?

Speculative decoding with the standard accept/resample rule leaves the sampling distribution unchanged; a bug in
drafting, verification or the sampler's RNG handling would shift it. Equal outputs for equal seeds cannot be
expected (SD consumes random numbers differently), so the check is a two-sample test on samples of the same
prompts drawn with SD on and with SD off. H0: for every prompt, both sets are i.i.d. from the same distribution.

Tests (pure numpy/stdlib; scipy is not in the environment):

1. **Per-position token homogeneity (chi-square).** For each position j < ``positions`` and each prompt, a 2 x C
   contingency table of the token at position j (categories: the pooled ``top_tokens`` most frequent tokens with at
   least ``min_count`` pooled occurrences, "other", and "ended" for responses shorter than j + 1, which makes it a
   test of length too). Prompts are independent, so the chi-square statistics of one position add up across prompts
   (degrees of freedom add up too) into one p-value per position. Positions of one response are dependent, so the
   positions are combined with Bonferroni: ``p = min(1, P * min_j p_j)`` (valid under any dependence).
2. **Sequence log-probability (Mann-Whitney U and Kolmogorov-Smirnov).** The mean per-token log-prob of each sample
   under the model (the caller supplies it, e.g. vLLM's ``logprobs=0`` of the sampled tokens), pooled over prompts,
   compared with a two-sided Mann-Whitney U test (normal approximation, tie and continuity corrections) and a
   two-sample KS test (asymptotic Kolmogorov distribution with Stephens' small-sample correction). Pooling is exact
   under H0 when every prompt contributes the same number of samples to both sets; the result flags unbalanced input.
3. **Response length** (the same two tests on lengths).

``overall_p`` = Bonferroni over all tests run; ``passed`` = ``overall_p >= alpha``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["chi2_homogeneity", "chi2_sf", "from_records", "ks_2samp", "mann_whitney_u", "two_sample_test"]


# --- distributions ---------------------------------------------------------------------------------------------

def _gammainc_upper_reg(a: float, x: float) -> float:
    """Q(a, x) = Gamma(a, x) / Gamma(a) (Numerical Recipes: series for x < a + 1, Lentz continued fraction else)."""
    if x <= 0:
        return 1.0
    if a <= 0:
        return 0.0
    gln = math.lgamma(a)
    if x < a + 1.0:
        ap, s, d = a, 1.0 / a, 1.0 / a
        for _ in range(10_000):
            ap += 1.0
            d *= x / ap
            s += d
            if abs(d) < abs(s) * 1e-15:
                break
        return max(0.0, 1.0 - s * math.exp(-x + a * math.log(x) - gln))
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return min(1.0, math.exp(-x + a * math.log(x) - gln) * h)


def chi2_sf(x: float, df: float) -> float:
    """Survival function of the chi-square distribution with ``df`` degrees of freedom."""
    if df <= 0:
        return 1.0
    return _gammainc_upper_reg(df / 2.0, x / 2.0)


def _norm_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _kolmogorov_sf(lam: float) -> float:
    if lam < 0.2:
        return 1.0
    s = 0.0
    for k in range(1, 101):
        term = 2.0 * (-1) ** (k - 1) * math.exp(-2.0 * k * k * lam * lam)
        s += term
        if abs(term) < 1e-16:
            break
    return min(1.0, max(0.0, s))


# --- tests -----------------------------------------------------------------------------------------------------

def chi2_homogeneity(table: np.ndarray) -> tuple[float, int]:
    """Pearson chi-square statistic and degrees of freedom of an r x c contingency table (empty columns and
    rows dropped)."""
    t = np.asarray(table, dtype=float)
    t = t[:, t.sum(axis=0) > 0]
    t = t[t.sum(axis=1) > 0]
    if t.shape[0] < 2 or t.shape[1] < 2:
        return 0.0, 0
    n = t.sum()
    exp = np.outer(t.sum(axis=1), t.sum(axis=0)) / n
    return float(((t - exp) ** 2 / exp).sum()), int((t.shape[0] - 1) * (t.shape[1] - 1))


def mann_whitney_u(x: Sequence[float], y: Sequence[float]) -> dict[str, float]:
    """Two-sided Mann-Whitney U test (normal approximation with tie and continuity corrections)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        return {"U": float("nan"), "z": float("nan"), "p": 1.0}
    allv = np.concatenate([x, y])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(len(allv))
    sv = allv[order]
    i = 0
    tie_term = 0.0
    while i < len(sv):
        j = i
        while j + 1 < len(sv) and sv[j + 1] == sv[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        t = j - i + 1
        tie_term += t ** 3 - t
        i = j + 1
    u1 = ranks[:n1].sum() - n1 * (n1 + 1) / 2.0
    mu = n1 * n2 / 2.0
    n = n1 + n2
    var = n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1)))
    if var <= 0:
        return {"U": float(u1), "z": 0.0, "p": 1.0}
    z = (abs(u1 - mu) - 0.5) / math.sqrt(var)
    return {"U": float(u1), "z": float(max(z, 0.0)), "p": float(min(1.0, 2.0 * _norm_sf(max(z, 0.0))))}


def ks_2samp(x: Sequence[float], y: Sequence[float]) -> dict[str, float]:
    """Two-sided two-sample Kolmogorov-Smirnov test (asymptotic p-value, Stephens' correction)."""
    x = np.sort(np.asarray(x, dtype=float))
    y = np.sort(np.asarray(y, dtype=float))
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        return {"D": float("nan"), "p": 1.0}
    allv = np.concatenate([x, y])
    cdf1 = np.searchsorted(x, allv, side="right") / n1
    cdf2 = np.searchsorted(y, allv, side="right") / n2
    d = float(np.max(np.abs(cdf1 - cdf2)))
    en = math.sqrt(n1 * n2 / (n1 + n2))
    return {"D": d, "p": _kolmogorov_sf((en + 0.12 + 0.11 / en) * d)}


# --- the losslessness check ------------------------------------------------------------------------------------

def _position_table(on: Sequence[Sequence[int]], off: Sequence[Sequence[int]], j: int, top_tokens: int,
                    min_count: int) -> np.ndarray:
    ENDED = object()

    def tok(s):
        return s[j] if len(s) > j else ENDED

    a = Counter(tok(s) for s in on)
    b = Counter(tok(s) for s in off)
    pooled = a + b
    cats = [t for t, c in pooled.most_common() if t is not ENDED and c >= min_count][:top_tokens]
    rows = []
    for cnt in (a, b):
        named = [cnt.get(t, 0) for t in cats]
        ended = cnt.get(ENDED, 0)
        other = sum(cnt.values()) - sum(named) - ended
        rows.append(named + [other, ended])
    return np.array(rows, dtype=float)


def two_sample_test(
    on: Mapping[Hashable, Sequence[Sequence[int]]],
    off: Mapping[Hashable, Sequence[Sequence[int]]],
    *,
    on_logprobs: Mapping[Hashable, Sequence[float]] | None = None,
    off_logprobs: Mapping[Hashable, Sequence[float]] | None = None,
    positions: int = 32,
    top_tokens: int = 10,
    min_count: int = 5,
    alpha: float = 0.01,
) -> dict[str, Any]:
    """Two-sample losslessness test of SD-on vs SD-off samples (see the module doc).

    ``on`` / ``off``: prompt key -> responses (token-id lists). ``on_logprobs`` / ``off_logprobs``: prompt key ->
    per-sample mean per-token log-prob under the model, in the same order as the responses (optional). Only
    prompts present in both sets are used. Returns p-values per test, ``overall_p`` (Bonferroni) and ``passed``."""
    keys = [k for k in on if k in off and len(on[k]) and len(off[k])]
    if not keys:
        raise ValueError("no prompt has samples in both sets")
    balanced = all(len(on[k]) == len(off[k]) for k in keys)
    per_pos = []
    for j in range(positions):
        stat, df = 0.0, 0
        for k in keys:
            s, d = chi2_homogeneity(_position_table(on[k], off[k], j, top_tokens, min_count))
            stat += s
            df += d
        per_pos.append({"position": j, "chi2": stat, "df": df, "p": chi2_sf(stat, df) if df else 1.0})
    tested = [p for p in per_pos if p["df"] > 0]
    chi_p = min(1.0, len(tested) * min(p["p"] for p in tested)) if tested else 1.0
    res: dict[str, Any] = {
        "prompts": len(keys),
        "n_on": sum(len(on[k]) for k in keys),
        "n_off": sum(len(off[k]) for k in keys),
        "balanced": balanced,
        "token_chi2": {"p": chi_p, "positions_tested": len(tested), "per_position": per_pos,
                       "method": "per-position chi-square homogeneity summed over prompts, Bonferroni over positions"},
    }
    len_on = [len(s) for k in keys for s in on[k]]
    len_off = [len(s) for k in keys for s in off[k]]
    res["length_mw"] = mann_whitney_u(len_on, len_off)
    res["length_ks"] = ks_2samp(len_on, len_off)
    ps = [chi_p, res["length_mw"]["p"], res["length_ks"]["p"]]
    if on_logprobs is not None and off_logprobs is not None:
        lp_on = [float(v) for k in keys for v in on_logprobs[k]]
        lp_off = [float(v) for k in keys for v in off_logprobs[k]]
        res["logprob_mw"] = mann_whitney_u(lp_on, lp_off)
        res["logprob_ks"] = ks_2samp(lp_on, lp_off)
        res["mean_logprob_on"] = float(np.mean(lp_on)) if lp_on else float("nan")
        res["mean_logprob_off"] = float(np.mean(lp_off)) if lp_off else float("nan")
        ps += [res["logprob_mw"]["p"], res["logprob_ks"]["p"]]
    res["overall_p"] = min(1.0, len(ps) * min(ps))
    res["alpha"] = alpha
    res["passed"] = res["overall_p"] >= alpha
    return res


def from_records(records: Iterable[Mapping[str, Any]], key: str = "prompt_index"
                 ) -> tuple[dict[Hashable, list[list[int]]], dict[Hashable, list[float]]]:
    """Records as ``seer-verl replay record`` writes them (``response_ids``, ``logprobs`` of the sampled tokens)
    -> (prompt -> responses, prompt -> mean per-token log-probs) for :func:`two_sample_test`."""
    resp: dict[Hashable, list[list[int]]] = {}
    lps: dict[Hashable, list[float]] = {}
    for r in records:
        k = r[key]
        resp.setdefault(k, []).append(list(r["response_ids"]))
        lp = r.get("logprobs") or []
        lps.setdefault(k, []).append(float(np.mean(lp)) if len(lp) else 0.0)
    return resp, lps
