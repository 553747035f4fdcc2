"""Scheduling policies, selectable by name (config key ``seer.policy``).

* ``divided``: divided rollout, first-come-first-served (:class:`FcfsPolicy`).
* ``seer``: context-aware scheduling, probes SFS then approximate LFS (:class:`SeerPolicy`).
* ``oracle``: LFS on true lengths, simulation only (:class:`OraclePolicy`).

Each module registers its class with :func:`register_policy` (``POLICIES``: name -> class); a new policy is one
more module and one import line here, and it then appears in ``seer.policy`` validation, the bench and the simulator.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..request import RolloutRequest
from .base import POLICIES, LazyQueue, SchedulingPolicy, register_policy
from .fcfs import FcfsPolicy
from .seer import SeerPolicy
from .oracle import OraclePolicy  # noqa: I001 - registration order is the order names are listed in

__all__ = [
    "POLICIES",
    "POLICY_NAMES",
    "make_policy",
    "register_policy",
    "check_policy_name",
    "SchedulingPolicy",
    "LazyQueue",
    "FcfsPolicy",
    "SeerPolicy",
    "OraclePolicy",
]

POLICY_NAMES: tuple[str, ...] = tuple(POLICIES)


def check_policy_name(name: object) -> str:
    """Return ``name`` if it is a known policy, else raise ValueError naming ``seer.policy``."""
    if not isinstance(name, str) or name not in POLICIES:
        allowed = ", ".join(repr(n) for n in POLICIES)
        raise ValueError(f"seer.policy must be one of {allowed}; got {name!r}")
    return name


def make_policy(name: str, requests: Sequence[RolloutRequest]) -> SchedulingPolicy:
    """Instantiate the policy registered under ``name`` for ``requests`` (the buffer's list)."""
    return POLICIES[check_policy_name(name)](requests)
