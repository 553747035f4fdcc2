"""Checks of a Seer rollout config and batch before anything runs: every ``seer.*`` key, the Seer knobs against
verl's rollout settings and the engines' KV (:func:`validate_rollout_config`), and the batch's chat prompts
(:func:`check_rows`). Errors name the key or row, the value and what is allowed."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from omegaconf import OmegaConf

from seer_verl.backends import backend_of
from seer_verl.core import SeerConfig
from seer_verl.replay.keys import check_replay_seed
from seer_verl.speculative.config import SpecConfig, check_engine_kwargs

__all__ = ["check_rows", "seer_config_of", "validate_rollout_config"]

logger = logging.getLogger(__name__)

_R = "actor_rollout_ref.rollout"
#: verl's built-in agent loops that read the row's ``raw_prompt`` chat messages
_RAW_PROMPT_AGENTS = ("single_turn_agent", "tool_agent")


def seer_config_of(config: Any) -> dict[str, Any]:
    """The ``seer`` node of verl's config as a plain dict, validated (errors name ``seer.<key>``)."""
    node = OmegaConf.select(config, "seer", default=None)
    values = {} if node is None else OmegaConf.to_container(node, resolve=True)
    if not isinstance(values, Mapping):
        raise ValueError(f"seer must be a mapping of seer.* keys; got {values!r}")
    values = dict(values)
    spec = values.pop("spec", None)  # grouped speculative decoding: its own node, validated by SpecConfig
    check_replay_seed(values.pop("replay_seed", None))  # read by the agent-loop workers (seer_verl.replay)
    SeerConfig.from_mapping(values)
    SpecConfig.from_mapping(spec)
    if spec is not None:
        values["spec"] = spec
    return values


def validate_rollout_config(config: Any, engines: list[tuple[int, int]] | None = None) -> list[str]:
    """Validate ``seer.*`` and check it against verl's rollout config (and the engines' ``(capacity_tokens,
    block_size)`` when given). Raises ValueError naming the key, the value and what is allowed; returns (and
    logs) warnings. Needs no engine: call it before starting any."""
    values = seer_config_of(config)
    spec = SpecConfig.from_mapping(values.pop("spec", None))
    seer = SeerConfig.from_mapping(values)
    r = OmegaConf.select(config, _R)
    if r is None:
        raise ValueError(f"{_R} is missing from the config")
    backend = backend_of(OmegaConf.select(r, "name", default=None))  # an engine Seer supports
    kwargs = OmegaConf.select(r, f"engine_kwargs.{backend.engine_kwargs_key}", default=None)
    check_engine_kwargs(spec, OmegaConf.to_container(kwargs, resolve=True) if kwargs is not None else None)

    def get(key: str) -> Any:
        v = OmegaConf.select(r, key, default=None)
        return None if v is None else v

    max_model_len = get("max_model_len")
    warnings = seer.check_rollout(
        n=get("n"), prompt_length=get("prompt_length"), response_length=get("response_length"),
        max_model_len=max_model_len, max_num_seqs=get("max_num_seqs"), engines=engines,
        keys={"n": f"{_R}.n", "prompt_length": f"{_R}.prompt_length", "response_length": f"{_R}.response_length",
              "max_model_len": f"{_R}.max_model_len", "max_num_seqs": f"{_R}.max_num_seqs",
              "kv": f"{_R}.engine_kwargs.vllm.kv_cache_memory_bytes (CPU) or {_R}.gpu_memory_utilization"},
    )
    for w in warnings:
        logger.warning("Seer config: %s", w)
    return warnings


def check_rows(non_tensor_batch: Mapping[str, Any], n: int, default_agent: str | None) -> None:
    """Raise ValueError naming the rows whose chat prompt verl's built-in agent loops cannot use: no
    ``raw_prompt``, not a list of messages, an empty conversation, a message without ``role``/``content``.
    (Stock verl fails the whole batch on such a row too, with the tokenizer's error and no row named.)"""
    agents = non_tensor_batch.get("agent_name")
    rows = [i for i in range(n) if (agents[i] if agents is not None else default_agent) in _RAW_PROMPT_AGENTS]
    if not rows:
        return
    raw = non_tensor_batch.get("raw_prompt")
    if raw is None:
        raise ValueError(f"the batch has no 'raw_prompt' field (chat messages), needed by rows {rows[:10]} "
                         f"({len(rows)} rows) for verl's agent loops")
    bad: list[str] = []
    for i in rows:
        msgs = raw[i]
        if msgs is None or isinstance(msgs, (str, bytes, Mapping)) or not hasattr(msgs, "__len__"):
            bad.append(f"row {i}: raw_prompt must be a list of chat messages, got {type(msgs).__name__}")
        elif len(msgs) == 0:
            bad.append(f"row {i}: raw_prompt is an empty conversation")
        else:
            for j, m in enumerate(msgs):
                if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
                    bad.append(f"row {i}: message {j} must be a mapping with 'role' and 'content', got {m!r:.80}")
                    break
    if bad:
        raise ValueError(f"{len(bad)} malformed dataset row(s): " + "; ".join(bad[:10])
                         + ("; ..." if len(bad) > 10 else ""))
