"""The benchmark workload: GRPO-shaped batches (prompts x group size) as verl's trainer hands them to rollout."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np


def load_prompts(dataset: str | Path, num_prompts: int, seed: int) -> list[dict[str, Any]]:
    """``num_prompts`` rows drawn without replacement (seeded) from a verl-format parquet."""
    import pandas as pd

    path = Path(dataset).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"workload.dataset={str(path)!r} does not exist; run `seer-verl prepare` first")
    df = pd.read_parquet(path)
    if "prompt" not in df.columns:
        raise ValueError(f"workload.dataset={str(path)!r} has no 'prompt' column (chat messages, verl's RLHFDataset "
                         f"format); its columns are {list(df.columns)}")
    if num_prompts < 1:
        raise ValueError(f"workload.num_prompts={num_prompts} is not allowed: an integer >= 1")
    if num_prompts > len(df):
        raise ValueError(f"workload.num_prompts={num_prompts} exceeds the {len(df)} rows of {path}")
    idx = np.random.default_rng(seed).choice(len(df), size=num_prompts, replace=False)
    return [df.iloc[int(i)].to_dict() for i in idx]


def make_batch(rows: list[dict[str, Any]], group_size: int):
    """A verl DataProto like the legacy trainer's ``gen_batch.repeat(n, interleave=True)``: siblings are adjacent
    rows sharing a ``uid``; ``raw_prompt`` holds the chat messages the agent loop tokenizes."""
    from verl import DataProto

    raw, uids, index, sources, gts = [], [], [], [], []
    for i, row in enumerate(rows):
        uid = str(uuid.uuid4())
        msgs = [dict(m) for m in row["prompt"]]
        for _ in range(group_size):
            raw.append(msgs)
            uids.append(uid)
            index.append(i)
            sources.append(row.get("data_source", "unknown"))
            gts.append(row.get("reward_model", {}))
    obj = lambda xs: np.array(xs + [None], dtype=object)[:-1]  # noqa: E731 (keep lists as objects)
    return DataProto.from_dict(
        non_tensors={
            "raw_prompt": obj(raw),
            "uid": np.array(uids, dtype=object),
            "index": np.array(index, dtype=np.int64),
            "data_source": np.array(sources, dtype=object),
            "reward_model": obj(gts),
        },
        meta_info={"global_steps": 0, "validate": False},
    )
