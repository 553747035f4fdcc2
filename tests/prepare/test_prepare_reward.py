"""Unit tests for the seer_arith rule reward (seer_verl/prepare/reward.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from seer_verl.prepare import reward
from seer_verl.prepare.reward import compute_score, extract_answer

REWARD_PY = Path(reward.__file__)


def score(text: str, gt: object) -> float:
    return compute_score("seer_arith", text, gt)


def test_correct_answer_after_hashes():
    assert score("7 + 12 = 19, then 19 - 5 = 14.\n#### 14", "14") == 1.0


def test_wrong_answer():
    assert score("7 + 12 = 19, then 19 - 5 = 14.\n#### 15", "14") == 0.0


def test_missing_answer():
    assert score("I am not sure how to solve this.", "14") == 0.0
    assert score("", "14") == 0.0
    assert score("####", "14") == 0.0


def test_returns_float():
    assert isinstance(score("#### 3", "3"), float)
    assert isinstance(score("#### 4", "3"), float)


@pytest.mark.parametrize(
    "text, gt",
    [
        ("#### 1,234", "1234"),
        ("#### 1,234,567", "1234567"),
        ("The total is 1,234 apples.", "1234"),
        ("####   42  ", "42"),
        ("#### 42.", "42"),
        ("#### 42.0", "42"),
        ("#### **42**", "42"),
        ("#### $42", "42"),
        ("#### 42 apples", "42"),
        ("#### 42", " 42 "),
        ("#### 42", 42),
        ("#### 1234", "1,234"),
    ],
)
def test_tolerated_formats(text, gt):
    assert score(text, gt) == 1.0


@pytest.mark.parametrize(
    "text, gt, expected",
    [
        ("5 - 8 = -3\n#### -3", "-3", 1.0),
        ("#### -3", "3", 0.0),
        ("#### 3", "-3", 0.0),
        ("#### \u22123", "-3", 1.0),  # unicode minus
        ("so the answer is -12.", "-12", 1.0),
        ("20 - 8", "8", 1.0),  # a binary minus is not a sign
    ],
)
def test_negative_numbers(text, gt, expected):
    assert score(text, gt) == expected


def test_hashes_take_precedence_over_last_number():
    text = "Tom has 7 + 12 = 19 apples.\n#### 19\nI hope 3 people like this answer."
    assert score(text, "19") == 1.0
    assert score(text, "3") == 0.0


def test_last_hashes_wins():
    assert score("#### 5\nWait, I made a mistake.\n#### 6", "6") == 1.0
    assert score("#### 5\nWait, I made a mistake.\n#### 6", "5") == 0.0


def test_falls_back_to_last_number():
    assert score("First 3, then 4, so the answer is 10", "10") == 1.0
    assert score("First 3, then 4, so the answer is 10", "4") == 0.0
    # '####' with nothing numeric after it: use the last number in the text
    assert score("The answer is 10.\n#### ten", "10") == 1.0


def test_integer_compare_rejects_fractions():
    assert score("#### 42.5", "42") == 0.0
    assert score("#### 4.5", "4.5") == 1.0


def test_numbers_inside_words_are_ignored():
    assert extract_answer("step2 done, x3") is None


def test_extract_answer():
    assert extract_answer("a 1 b 2 #### 3 c 4") == 3
    assert extract_answer("a 1 b 2") == 2
    assert extract_answer("nothing") is None


def test_extra_args_accepted():
    assert compute_score("seer_arith", "#### 9", "9", {"index": 0, "split": "train", "steps": 2}, foo=1) == 1.0
    assert compute_score("other_source", "#### 9", "9", None) == 1.0


def test_module_imports_no_heavy_deps():
    """verl loads the file by path in reward workers: it must not pull in torch, vllm or verl."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('r', {str(REWARD_PY)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "assert m.compute_score('seer_arith', '#### 2', '2') == 1.0\n"
        "bad = [k for k in ('torch', 'vllm', 'verl', 'numpy', 'transformers') if k in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_loadable_by_verl():
    pytest.importorskip("verl", reason="verl not installed")
    import_utils = pytest.importorskip("verl.utils.import_utils")
    fn = import_utils.load_extern_object(module_path=str(REWARD_PY), object_name="compute_score")
    assert fn("seer_arith", "so 2 + 2 = 4\n#### 4", "4", {"index": 1}) == 1.0
    assert fn("seer_arith", "#### 5", "4", {"index": 1}) == 0.0
