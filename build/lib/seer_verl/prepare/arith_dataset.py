"""Seeded multi-step arithmetic word problems in verl's RLHFDataset parquet format.

Each problem starts from a small quantity and applies 2-5 operations (add, subtract, add groups ``a × b``,
give away groups ``a × b``, multiply by 2 or 3) told in varied phrasing, e.g.::

    Tom has 7 apples, buys 3 bags with 4 apples in each, and then gives away 5 apples.
    How many apples does Tom have now?

Rows follow verl's format (``examples/data_preprocess/gsm8k.py``)::

    data_source  "seer_arith"
    prompt       [{"role": "user", "content": question + INSTRUCTION}]
    ability      "math"
    reward_model {"style": "rule", "ground_truth": "<answer>"}
    extra_info   {"index": i, "split": "train"|"test", "steps": k}

The output is a pure function of ``(seed, num_train, num_val)``: string-seeded ``random.Random`` instances
(independent of ``PYTHONHASHSEED``), one per split; validation questions never repeat a training question.
Scored by :func:`seer_verl.prepare.reward.compute_score`.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

__all__ = [
    "DATA_SOURCE",
    "INSTRUCTION",
    "GENERATOR_VERSION",
    "Problem",
    "evaluate_ops",
    "generate_problem",
    "generate_problems",
    "make_rows",
    "write_dataset",
    "dataset_paths",
]

DATA_SOURCE = "seer_arith"
INSTRUCTION = (
    "Let's think step by step, and then give the final answer as a number on the last line "
    "in the form '#### <answer>'."
)
# bump when the generator's output for a given seed changes (invalidates written data sets)
GENERATOR_VERSION = 2

MIN_STEPS, MAX_STEPS = 1, 5
#: relative frequency of 1..5-step problems
STEP_WEIGHTS = (35, 30, 20, 10, 5)
MAX_VALUE = 999  # running totals stay within [1, MAX_VALUE]

# ---------------------------------------------------------------------------------------------------------------
# vocabulary

_NAMES = [
    ("Tom", "he", "his"), ("Anna", "she", "her"), ("Ben", "he", "his"), ("Maya", "she", "her"),
    ("Leo", "he", "his"), ("Sara", "she", "her"), ("Omar", "he", "his"), ("Lina", "she", "her"),
    ("Jack", "he", "his"), ("Emma", "she", "her"), ("Ravi", "he", "his"), ("Chloe", "she", "her"),
    ("Diego", "he", "his"), ("Yuki", "she", "her"), ("Sam", "he", "his"), ("Nora", "she", "her"),
    ("Felix", "he", "his"), ("Priya", "she", "her"), ("Hugo", "he", "his"), ("Zoe", "she", "her"),
]
_FRIENDS = ["Alex", "Mia", "Noah", "Lily", "Ethan", "Ivy", "Lucas", "Ella", "Max", "Ruby", "Kai", "Aria"]

# plural noun, is it food, container nouns
_ITEMS = [
    ("apples", True, ["bags", "baskets", "boxes"]),
    ("oranges", True, ["bags", "crates", "boxes"]),
    ("cookies", True, ["jars", "boxes", "packs"]),
    ("cupcakes", True, ["trays", "boxes"]),
    ("strawberries", True, ["baskets", "bowls", "boxes"]),
    ("candies", True, ["bags", "jars", "packs"]),
    ("marbles", False, ["bags", "jars", "boxes"]),
    ("stickers", False, ["packs", "sheets", "books"]),
    ("pencils", False, ["boxes", "packs", "cases"]),
    ("trading cards", False, ["packs", "boxes", "decks"]),
    ("seashells", False, ["buckets", "bags", "jars"]),
    ("toy cars", False, ["boxes", "sets", "crates"]),
    ("books", False, ["boxes", "crates", "bags"]),
    ("coins", False, ["purses", "jars", "bags"]),
    ("balloons", False, ["packs", "bags", "bunches"]),
    ("beads", False, ["jars", "bags", "tubes"]),
]

_TIMES = {2: ("double", "twice"), 3: ("triple", "three times")}


@dataclass(frozen=True)
class Problem:
    """One generated problem: the question text and the structured operations it was rendered from."""

    question: str
    answer: int
    start: int
    ops: tuple[tuple[str, tuple[int, ...]], ...]  # (kind, operands), kind in add/sub/add_groups/sub_groups/mul
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def steps(self) -> int:
        return len(self.ops)


def evaluate_ops(start: int, ops: Any) -> int:
    """Apply ``ops`` to ``start`` (the ground-truth semantics of every operation kind)."""
    value = start
    for kind, args in ops:
        if kind == "add":
            value += args[0]
        elif kind == "sub":
            value -= args[0]
        elif kind == "add_groups":
            value += args[0] * args[1]
        elif kind == "sub_groups":
            value -= args[0] * args[1]
        elif kind == "mul":
            value *= args[0]
        else:
            raise ValueError(f"unknown operation {kind!r}")
    return value


# ---------------------------------------------------------------------------------------------------------------
# generation


def _pick_op(rng: random.Random, value: int, used: list[str]) -> tuple[str, tuple[int, ...]]:
    """A random operation that keeps the running total within [1, MAX_VALUE]."""
    kinds = ["add", "sub", "add_groups", "sub_groups", "mul"]
    weights = [3, 3, 3, 2, 1.5]
    for _ in range(100):
        kind = rng.choices(kinds, weights)[0]
        if used and kind == used[-1] and rng.random() < 0.7:
            continue  # vary consecutive operations
        if kind == "add":
            n = rng.randint(1, 15)
            if value + n <= MAX_VALUE:
                return kind, (n,)
        elif kind == "sub":
            if value >= 2:
                n = rng.randint(1, min(15, value - 1))
                return kind, (n,)
        elif kind == "add_groups":
            a, b = rng.randint(2, 6), rng.randint(2, 9)
            if value + a * b <= MAX_VALUE:
                return kind, (a, b)
        elif kind == "sub_groups":
            a, b = rng.randint(2, 5), rng.randint(2, 6)
            if a * b < value:
                return kind, (a, b)
        elif kind == "mul":
            m = rng.choice([2, 2, 3])
            if value * m <= 200 and "mul" not in used:
                return kind, (m,)
    n = rng.randint(1, 9)  # always possible for value <= MAX_VALUE - 9 ... and otherwise subtract
    return ("add", (n,)) if value + n <= MAX_VALUE else ("sub", (n,))


def _phrase(rng: random.Random, kind: str, args: tuple[int, ...], ctx: dict[str, Any]) -> str:
    """Third-person present-tense verb phrase for one operation, e.g. 'buys 3 bags with 4 apples in each'."""
    items, food, containers = ctx["items"], ctx["food"], ctx["containers"]
    poss = ctx["poss"]
    friend = rng.choice(ctx["friends"])
    if kind == "add":
        (n,) = args
        options = [
            f"buys {n} more {items}",
            f"finds {n} {items}",
            f"gets {n} {items} from {friend}",
            f"is given {n} more {items}",
            f"receives {n} {items} as a gift",
        ]
        if not food:
            options.append(f"wins {n} {items} in a game")
        else:
            options.append(f"picks {n} more {items}")
    elif kind == "sub":
        (n,) = args
        options = [
            f"gives away {n} {items}",
            f"gives {n} {items} to {friend}",
            f"sells {n} {items}",
            f"loses {n} {items}",
        ]
        if food:
            options += [f"eats {n} {items}", f"shares {n} {items} with {friend}"]
        else:
            options.append(f"trades away {n} {items}")
    elif kind == "add_groups":
        a, b = args
        c = rng.choice(containers)
        options = [
            f"buys {a} {c} with {b} {items} in each",
            f"buys {a} {c} of {b} {items} each",
            f"receives {a} {c} that each hold {b} {items}",
            f"gets {a} more {c}, each containing {b} {items}",
        ]
    elif kind == "sub_groups":
        a, b = args
        options = [
            f"gives {a} friends {b} {items} each",
            f"hands out {b} {items} to each of {a} classmates",
            f"packs {a} gift bags with {b} {items} in each and gives them away",
        ]
    elif kind == "mul":
        (m,) = args
        verb, adverb = _TIMES[m]
        options = [
            f"manages to {verb} the number of {items} {ctx['pron']} has",
            f"trades so well that {ctx['pron']} ends up with {adverb} as many {items} as before",
            f"{verb}s {poss} collection of {items}",
        ]
    else:  # pragma: no cover
        raise ValueError(kind)
    return rng.choice(options)


def _render(rng: random.Random, start: int, phrases: list[str], ctx: dict[str, Any]) -> str:
    name, pron, items = ctx["name"], ctx["pron"], ctx["items"]
    Pron = pron.capitalize()
    endings = [
        f"How many {items} does {name} have now?",
        f"How many {items} does {pron} have at the end?",
        f"How many {items} does {name} end up with?",
        f"What is the total number of {items} {name} has in the end?",
    ]
    ending = rng.choice(endings)
    k = len(phrases)
    style = rng.randrange(5)
    if style == 0:  # comma list
        body = ", ".join(phrases[:-1]) + (", and then " if k > 2 else " and then ") + phrases[-1]
        text = f"{name} has {start} {items}, {body}."
    elif style == 1:  # first / next / finally
        connectors = ["First", "Next", "After that", "Then", "Finally"]
        mids = connectors[1 : 1 + max(0, k - 2)]
        conns = ["First"] + mids + (["Finally"] if k > 1 else [])
        parts = [f"{c}, {pron} {p}." for c, p in zip(conns, phrases)]
        text = f"{name} starts with {start} {items}. " + " ".join(parts)
    elif style == 2:  # days of the week
        days = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
        parts = [f"On {d}, {pron} {p}." for d, p in zip(days, phrases)]
        text = f"At the start of the week, {name} has {start} {items}. " + " ".join(parts)
    elif style == 3:  # plain sentences
        parts = [f"{Pron} {phrases[0]}."] + [f"Then {pron} {p}." for p in phrases[1:]]
        text = f"{name} has {start} {items}. " + " ".join(parts)
    else:  # question first
        parts = [f"{Pron} {phrases[0]}"] + [f"then {p}" for p in phrases[1:]]
        question = ending
        ending = ""
        text = f"{question} {name} begins with {start} {items}. " + ", ".join(parts) + "."
    return f"{text} {ending}".strip()


def generate_problem(rng: random.Random, steps: int | None = None) -> Problem:
    """One problem with ``steps`` operations (drawn with ``STEP_WEIGHTS`` when ``None``), drawn from ``rng``.

    Easy problems dominate so that a 135M model earns some reward (GRPO needs reward variance within a group)."""
    k = rng.choices(range(MIN_STEPS, MAX_STEPS + 1), weights=STEP_WEIGHTS)[0] if steps is None else steps
    if not MIN_STEPS <= k <= MAX_STEPS:
        raise ValueError(f"steps must be in [{MIN_STEPS}, {MAX_STEPS}], got {k}")
    name, pron, poss = rng.choice(_NAMES)
    items, food, containers = rng.choice(_ITEMS)
    ctx = {
        "name": name, "pron": pron, "poss": poss, "items": items, "food": food, "containers": containers,
        "friends": [f for f in _FRIENDS if f != name],
    }
    start = rng.randint(3, 30)
    value = start
    ops: list[tuple[str, tuple[int, ...]]] = []
    used: list[str] = []
    while True:
        ops.clear()
        used.clear()
        value = start
        for _ in range(k):
            kind, args = _pick_op(rng, value, used)
            ops.append((kind, args))
            used.append(kind)
            value = evaluate_ops(value, [(kind, args)])
        # "mixed": at least one increase and one decrease or multiplication
        if k == 1 or len(set(used)) >= 2 and any(u.startswith("sub") for u in used) or k >= 4 and len(set(used)) >= 3:
            break
    phrases = [_phrase(rng, kind, args, ctx) for kind, args in ops]
    question = _render(rng, start, phrases, ctx)
    answer = evaluate_ops(start, ops)
    return Problem(question=question, answer=answer, start=start, ops=tuple(ops), meta={"name": name, "items": items})


def _rng(seed: int, split: str) -> random.Random:
    return random.Random(f"seer_arith/v{GENERATOR_VERSION}/{split}/{seed}")


def generate_problems(
    num: int, seed: int = 0, split: str = "train", exclude: set[str] | frozenset[str] = frozenset()
) -> list[Problem]:
    """``num`` distinct problems for ``split``, deterministic in ``(seed, split, exclude)``."""
    rng = _rng(seed, split)
    seen = set(exclude)
    out: list[Problem] = []
    attempts = 0
    while len(out) < num:
        attempts += 1
        if attempts > 50 * num + 1000:
            raise RuntimeError(f"could not generate {num} distinct problems")
        p = generate_problem(rng)
        if p.question in seen:
            continue
        seen.add(p.question)
        out.append(p)
    return out


def make_rows(problems: list[Problem], split: str) -> list[dict[str, Any]]:
    """verl RLHFDataset rows for ``problems``."""
    return [
        {
            "data_source": DATA_SOURCE,
            "prompt": [{"role": "user", "content": f"{p.question} {INSTRUCTION}"}],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": str(p.answer)},
            "extra_info": {"index": i, "split": split, "steps": p.steps},
        }
        for i, p in enumerate(problems)
    ]


def iter_splits(num_train: int, num_val: int, seed: int) -> Iterator[tuple[str, list[Problem]]]:
    train = generate_problems(num_train, seed, "train")
    yield "train", train
    yield "test", generate_problems(num_val, seed, "test", exclude={p.question for p in train})


# ---------------------------------------------------------------------------------------------------------------
# writing


def dataset_paths(out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(train.parquet, val.parquet)`` inside ``out_dir``."""
    out = Path(out_dir)
    return out / "train.parquet", out / "val.parquet"


def _umask_mode(path: str | os.PathLike[str]) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)  # mkstemp creates 0600 files


def _atomic_write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    import pandas as pd

    df = pd.DataFrame(rows, columns=["data_source", "prompt", "ability", "reward_model", "extra_info"])
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        df.to_parquet(tmp, index=False)
        _umask_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_write_text(text: str, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    _umask_mode(tmp)
    os.replace(tmp, path)


def write_dataset(
    out_dir: str | os.PathLike[str],
    num_train: int = 512,
    num_val: int = 64,
    seed: int = 0,
    force: bool = False,
) -> tuple[Path, Path]:
    """Write ``train.parquet`` and ``val.parquet`` to ``out_dir``; return their paths.

    Deterministic for ``(seed, num_train, num_val)``. A ``meta.json`` written last records the parameters;
    when it matches and both files exist, nothing is rewritten (unless ``force``).
    """
    if num_train < 0 or num_val < 0:
        raise ValueError("num_train and num_val must be >= 0")
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    train_path, val_path = dataset_paths(out)
    meta_path = out / "meta.json"
    meta = {
        "data_source": DATA_SOURCE,
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "num_train": num_train,
        "num_val": num_val,
    }
    if not force and train_path.exists() and val_path.exists() and meta_path.exists():
        try:
            if json.loads(meta_path.read_text()) == meta:
                return train_path, val_path
        except (OSError, ValueError):
            pass
    meta_path.unlink(missing_ok=True)
    for split, problems in iter_splits(num_train, num_val, seed):
        _atomic_write_parquet(make_rows(problems, split), train_path if split == "train" else val_path)
    _atomic_write_text(json.dumps(meta, indent=2) + "\n", meta_path)
    return train_path, val_path
