"""Rule-based reward for the ``seer_arith`` data set, loadable by verl.

verl calls ``fn(data_source, solution_str, ground_truth, extra_info, **reward_kwargs)`` when configured with::

    reward.custom_reward_function.path=<this file>
    reward.custom_reward_function.name=compute_score

The score is 1.0 when the response's final answer equals the ground truth, else 0.0. The final answer is the
number after the last ``####``; when no number follows the last ``####`` (or there is none), it is the last number
anywhere in the response. Thousands separators (``1,234``), surrounding spaces, markdown emphasis, a ``$`` sign and a
trailing period are tolerated; answers compare as integers (``42.0`` equals ``42``, ``42.5`` does not).

Pure standard library on purpose: verl imports this file by path inside reward workers, so it must not pull in
torch, vllm or verl.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["compute_score", "extract_answer", "parse_number"]

# minus signs that models (and typographers) produce
_MINUS = "-\u2212\u2012\u2013\u2014\ufe63\uff0d"
# a number: optional sign, digits with optional thousands separators (comma, thin/narrow/no-break space,
# underscore, apostrophe), optional decimal part
_SEP = ",\u2009\u202f\u00a0_'"
_NUMBER_RE = re.compile(
    rf"(?<![\w.])([{_MINUS}]?)(\d{{1,3}}(?:[{_SEP}]\d{{3}})+|\d+)(\.\d+)?(?!\d)"
)


def _normalise(sign: str, digits: str, frac: str | None) -> Decimal | None:
    text = re.sub(rf"[{_SEP}]", "", digits) + (frac or "")
    try:
        value = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the regex only admits valid digits
        return None
    return -value if sign else value


def parse_number(text: str) -> Decimal | None:
    """Return the first number in ``text`` (commas, spaces, sign and decimal part handled), or ``None``."""
    m = _NUMBER_RE.search(text)
    return _normalise(*m.groups()) if m else None


def _last_number(text: str) -> Decimal | None:
    last = None
    for m in _NUMBER_RE.finditer(text):
        last = m
    return _normalise(*last.groups()) if last else None


def extract_answer(solution_str: str) -> Decimal | None:
    """The response's final answer: the number after the last ``####``, else the last number in the text."""
    if not isinstance(solution_str, str):
        solution_str = str(solution_str)
    idx = solution_str.rfind("####")
    if idx >= 0:
        value = parse_number(solution_str[idx + 4 :])
        if value is not None:
            return value
    return _last_number(solution_str)


def _ground_truth_value(ground_truth: Any) -> Decimal | None:
    if isinstance(ground_truth, (list, tuple)) and ground_truth:
        ground_truth = ground_truth[0]
    if isinstance(ground_truth, bool):
        return None
    if isinstance(ground_truth, int):
        return Decimal(ground_truth)
    if isinstance(ground_truth, float):
        return Decimal(repr(ground_truth))
    text = str(ground_truth).strip()
    if "####" in text:  # gsm8k-style full solutions as ground truth
        return extract_answer(text)
    return parse_number(text)


def _equal(a: Decimal, b: Decimal) -> bool:
    if a == a.to_integral_value() and b == b.to_integral_value():
        return int(a) == int(b)
    return a == b


def compute_score(
    data_source: Any,
    solution_str: str,
    ground_truth: Any,
    extra_info: Any = None,
    **kwargs: Any,
) -> float:
    """1.0 if the final answer in ``solution_str`` equals ``ground_truth`` (integer compare), else 0.0."""
    del data_source, extra_info, kwargs  # one rule for every source
    expected = _ground_truth_value(ground_truth)
    if expected is None:
        return 0.0
    got = extract_answer(solution_str if solution_str is not None else "")
    if got is None:
        return 0.0
    return 1.0 if _equal(got, expected) else 0.0
