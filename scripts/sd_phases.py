"""Speculation per phase of a rollout: what drafting did in the bulk (many running requests) and in the tail (few).

    .venv/bin/python scripts/sd_phases.py runs/<name>/report.json [--out results/<name>.json] [--margin-replay]

Phases are batch-size bands of one engine's running requests (1, 2-3, 4-7, 8-15, 16+: the bands of the learnt
draft margin, ``seer.spec.margin_bands``). Two views, medians over the report's repeats:

* every policy, from the bench monitor's engine timelines (sampled about once a second): output tokens per
  second of engine time spent in each band, so ``seer_sd`` is compared with ``seer`` phase by phase;
* every run with SD engines, from their drafters' step logs: the share of steps that drafted, tokens per step per
  request (1 + accepted / rows), and the realised saving of drafted steps against the same engine's median
  undrafted step at the same batch size (1 - time per token with drafts / time per token without);
* what a verified draft token costs there: the drafted step's time beyond that median undrafted step, per draft
  token, and the acceptance a draft needs to pay (that cost over the undrafted step's time per token: an accepted
  token saves one such token, every draft token costs its share), beside the acceptance it had.

``--margin-replay`` replays the learnt margin's variants over the recorded drafted steps: a step is kept if its
predicted saving clears the variant's bar as that bar would have learnt from the steps it kept (a replay of the
steps that were drafted, not of those a lower bar would have added).
"""

from __future__ import annotations

import argparse
import json
import statistics as st
import sys
from pathlib import Path

BANDS = ((1, 1), (2, 3), (4, 7), (8, 15), (16, 10**9))
MAX_STEP_S = 2.0  # a longer gap between two drafter steps is an idle engine, not a step


def _band(rows: float) -> int | None:
    r = int(round(rows))
    for k, (lo, hi) in enumerate(BANDS):
        if lo <= r <= hi:
            return k
    return None


def _label(k: int) -> str:
    lo, hi = BANDS[k]
    return str(lo) if lo == hi else (f"{lo}+" if hi > 10**6 else f"{lo}-{hi}")


def timeline_rates(run: dict) -> list[dict]:
    """Per band: engine seconds spent there and tokens made, summed over the run's engines."""
    acc = [{"s": 0.0, "tokens": 0.0} for _ in BANDS]
    for e in run.get("engine_timelines") or []:
        t, r, g = e["t"], e["running"], e["gen_tokens"]
        for i in range(len(t) - 1):
            k = _band(r[i]) if r[i] == r[i + 1] else None  # an interval where the batch changed is left out
            if k is None or t[i + 1] <= t[i]:
                continue
            acc[k]["s"] += t[i + 1] - t[i]
            acc[k]["tokens"] += max(0.0, g[i + 1] - g[i])
    return acc


def drafter_phases(run: dict) -> list[dict]:
    """Per band, from the SD engines' step logs: steps, drafted steps, accepted tokens and realised savings."""
    out = [{"steps": 0, "drafted": 0, "rows": 0, "accepted": 0, "gains": [], "draft_ms": [], "break_even": [],
            "verified": 0, "verified_accepted": 0} for _ in BANDS]
    for e in run.get("sd_engines") or []:
        steps = e.get("steps") or []
        undrafted: dict[int, list[float]] = {}
        pairs = []
        for a, b in zip(steps, steps[1:]):
            dt, rows = b[0] - a[0], a[1]
            if dt > MAX_STEP_S or b[1] != rows or rows < 1:
                continue
            pairs.append((rows, a[3], b[4], dt))
            if a[3] == 0:
                undrafted.setdefault(rows, []).append(dt)
        base = {b: st.median(v) for b, v in undrafted.items() if len(v) >= 5}
        for rows, drafted, accepted, dt in pairs:
            o = out[_band(rows)]
            o["steps"] += 1
            o["rows"] += rows
            if drafted:
                o["drafted"] += 1
                o["accepted"] += accepted
                if rows in base:
                    o["gains"].append(1 - (dt / (rows + accepted)) / (base[rows] / rows))
                    per_draft = (dt - base[rows]) / drafted
                    o["draft_ms"].append(1e3 * per_draft)
                    o["break_even"].append(per_draft / (base[rows] / rows))
                    o["verified"] += drafted
                    o["verified_accepted"] += accepted
    return out


def margin_replay(report: dict, policy: str = "seer_sd") -> dict:
    """Per variant of :class:`~seer_verl.core.draft_margin.BandedDraftMargin` (``borrowing``: a band shrinks
    towards the engine-wide optimism, as shipped; ``independent``: towards 0, as at commit d3cf024): drafted steps
    kept and dropped per band, with the mean realised saving of each."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from seer_verl.core.draft_margin import BandedDraftMargin

    class Independent(BandedDraftMargin):
        def _optimism(self, k: int) -> float:
            return self._bands[k].optimism

    out: dict = {}
    for name, cls in (("borrowing", BandedDraftMargin), ("independent", Independent)):
        bands: dict = {}
        for run in (r for r in report["runs"] if r["policy"] == policy):
            for e in run.get("sd_engines") or []:
                steps = e.get("steps") or []
                und: dict[int, list[float]] = {}
                for a, b in zip(steps, steps[1:]):
                    if b[0] - a[0] <= MAX_STEP_S and b[1] == a[1] and a[3] == 0:
                        und.setdefault(a[1], []).append(b[0] - a[0])
                base = {k: st.median(v) for k, v in und.items() if len(v) >= 5}
                m = cls(min_gain=0.05, bands=len(BANDS))
                for a, b in zip(steps, steps[1:]):
                    m.tick()
                    if not a[3] or len(a) < 9 or not a[7]:
                        continue
                    rows = a[1]
                    keep = a[7] >= m.margin(rows)
                    o = bands.setdefault(_label(_band(rows)), {"kept": 0, "dropped": 0, "gain_kept": [],
                                                                "gain_dropped": []})
                    o["kept" if keep else "dropped"] += 1
                    if b[0] - a[0] <= MAX_STEP_S and b[1] == rows and rows in base:
                        g = 1 - ((b[0] - a[0]) / (rows + b[4])) / (base[rows] / rows)
                        o["gain_kept" if keep else "gain_dropped"].append(g)
                        if keep:
                            m.record(rows, a[7], g)
        out[name] = {k: {"kept": v["kept"], "dropped": v["dropped"],
                         "mean_saving_kept": round(st.mean(v["gain_kept"]), 3) if v["gain_kept"] else None,
                         "mean_saving_dropped": round(st.mean(v["gain_dropped"]), 3) if v["gain_dropped"] else None}
                     for k, v in sorted(bands.items(), key=lambda kv: BANDS[[_label(i) for i in
                                                                             range(len(BANDS))].index(kv[0])])}
    return out


def summarise(report: dict) -> dict:
    runs = report["runs"]
    policies = list(dict.fromkeys(r["policy"] for r in runs))
    tok_s: dict = {}
    for pol in policies:
        per_band = [[] for _ in BANDS]
        for run in (r for r in runs if r["policy"] == pol):
            for k, a in enumerate(timeline_rates(run)):
                if a["s"] >= 5.0:  # at least a few samples
                    per_band[k].append(a["tokens"] / a["s"])
        tok_s[pol] = {_label(k): (round(st.median(v), 1) if v else None) for k, v in enumerate(per_band)}
    drafting: dict = {}
    for pol in policies:
        rows = [drafter_phases(r) for r in runs if r["policy"] == pol and r.get("sd_engines")]
        if not rows:
            continue
        d = {}
        for k in range(len(BANDS)):
            bands = [x[k] for x in rows if x[k]["steps"]]
            if not bands:
                continue
            gains = [g for x in bands for g in x["gains"]]
            draft_ms = [g for x in bands for g in x["draft_ms"]]
            break_even = [g for x in bands for g in x["break_even"]]
            verified = sum(x["verified"] for x in bands)
            d[_label(k)] = {
                "steps": sum(x["steps"] for x in bands),
                "drafted_share": round(st.median(x["drafted"] / x["steps"] for x in bands), 3),
                "tokens_per_step_per_request": round(st.median(1 + x["accepted"] / x["rows"] for x in bands), 3),
                "realised_saving_median": round(st.median(gains), 3) if gains else None,
                "drafted_steps_with_baseline": len(gains),
                "ms_per_draft_token_median": round(st.median(draft_ms), 2) if draft_ms else None,
                "break_even_acceptance_median": round(st.median(break_even), 3) if break_even else None,
                "acceptance": round(sum(x["verified_accepted"] for x in bands) / verified, 3) if verified else None,
            }
        drafting[pol] = d
    return {"bands": [_label(k) for k in range(len(BANDS))], "tokens_per_engine_second": tok_s,
            "drafting": drafting, "runs": len(runs)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("report", type=Path)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--margin-replay", action="store_true", help="replay the learnt margin's variants (see above)")
    a = p.parse_args(argv)
    if not a.report.is_file():
        print(f"report={a.report}: no such file (a bench report.json)", file=sys.stderr)
        return 2
    s = summarise(json.loads(a.report.read_text()))
    labels = s["bands"]
    print("output tokens per engine-second by running requests per engine (median over repeats)")
    print(f"{'policy':<14}" + "".join(f"{b:>9}" for b in labels))
    for pol, v in s["tokens_per_engine_second"].items():
        print(f"{pol:<14}" + "".join(f"{'-' if v[b] is None else v[b]:>9}" for b in labels))
    for pol, d in s["drafting"].items():
        print(f"\n{pol}: drafting per band (drafted share, tokens per step per request, realised saving of drafted steps)")
        for b, x in d.items():
            g = x["realised_saving_median"]
            print(f"  rows {b:>5}: {x['steps']:6d} steps, drafted {x['drafted_share']:6.1%}, "
                  f"{x['tokens_per_step_per_request']:.2f} tok/step, saving "
                  + ("-" if g is None else f"{g:+.1%}") + f" ({x['drafted_steps_with_baseline']} steps)")
        print(f"{pol}: a verified draft token's cost per band (extra ms over the undrafted step, the acceptance at "
              "which it pays, the acceptance it had)")
        for b, x in d.items():
            if x["ms_per_draft_token_median"] is not None:
                print(f"  rows {b:>5}: {x['ms_per_draft_token_median']:6.2f} ms, pays above "
                      f"{x['break_even_acceptance_median']:.0%}, accepted {x['acceptance']:.0%}")
    if a.margin_replay:
        s["margin_replay"] = margin_replay(json.loads(a.report.read_text()))
        for name, bands in s["margin_replay"].items():
            print(f"\nmargin replay, {name}: drafted steps kept / dropped (mean realised saving)")
            for b, x in bands.items():
                f = lambda v: "-" if v is None else f"{v:+.1%}"  # noqa: E731
                print(f"  rows {b:>5}: kept {x['kept']:5d} ({f(x['mean_saving_kept'])}), dropped {x['dropped']:5d} "
                      f"({f(x['mean_saving_dropped'])})")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(s, indent=1) + "\n")
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
