"""Engine-agnostic core of Seer's rollout (divided rollout, context-aware scheduling, placement).

Pure, synchronous and deterministic; imports only the standard library. One concept per module:

* :mod:`.request`: :class:`RolloutRequest`, :class:`RequestGroup` (one response / one prompt group).
* :mod:`.buffer`: :class:`RequestBuffer`, the Request Buffer (all requests, probe designation).
* :mod:`.divided`: chunk budgets and chunk accounting (divided rollout, paper §3.2).
* :mod:`.placement`: :class:`EngineState`, :class:`Placement` (KV headroom, prefix affinity).
* :mod:`.context`: :class:`GroupLengthEstimator` (online group length estimates, paper §3.3).
* :mod:`.length_correlation`: :func:`group_length_correlation`, how much siblings' lengths have in common (the
  signal the group estimates learn from).
* :mod:`.policies`: ``divided`` (FCFS), ``seer`` (context-aware), ``oracle`` (true-length LFS).
* :mod:`.scheduler`: :class:`Scheduler`, the waiting set with the anti-starvation safeguard.
* :mod:`.controller`: :class:`RolloutController`, :class:`Dispatch` (Algorithm 2's loop).
* :mod:`.config`: :class:`SeerConfig`.
* :mod:`.stats`: :class:`RolloutStats`, the counters of one batch (verl logs them as ``timing_s/seer/*``).
* :mod:`.errors`: the core's exceptions (each names the request, engine or key at fault).
* :mod:`.step_time`, :mod:`.step_time_fit`: an engine's step-time model and its online fit.
* :mod:`.draft_acceptance`, :mod:`.draft_budget`: expected draft acceptance and the marginal-benefit draft budget
  of grouped speculative decoding (paper §3.4); :mod:`.draft_margin`, the budget's margin learnt from the savings
  its drafts realised.
* :mod:`.microbench`: :func:`run_dispatch_microbench`.
"""

from .buffer import RequestBuffer
from .config import POLICY_NAMES, SeerConfig
from .context import GroupLengthEstimator
from .controller import Dispatch, RolloutController
from .divided import apply_chunk, auto_chunk_size, chunk_budget, validate_chunk
from .errors import ChunkError, NoEngineError, PlacementError, SeerCoreError, StaleDispatchError
from .length_correlation import GroupLengthCorrelation, group_length_correlation
from .placement import EngineState, Placement, PlacementDecision, kv_footprint
from .policies import FcfsPolicy, OraclePolicy, SchedulingPolicy, SeerPolicy, make_policy
from .request import FINISH_REASONS, RequestGroup, RolloutRequest
from .scheduler import Scheduler
from .stats import RolloutStats


def __getattr__(name: str) -> object:
    # Imported lazily so that ``python -m seer_verl.core.microbench`` does not import it twice.
    if name == "run_dispatch_microbench":
        from .microbench import run_dispatch_microbench

        return run_dispatch_microbench
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "POLICY_NAMES",
    "FINISH_REASONS",
    "ChunkError",
    "Dispatch",
    "EngineState",
    "FcfsPolicy",
    "GroupLengthCorrelation",
    "GroupLengthEstimator",
    "NoEngineError",
    "OraclePolicy",
    "Placement",
    "PlacementDecision",
    "PlacementError",
    "RequestBuffer",
    "RequestGroup",
    "RolloutController",
    "RolloutRequest",
    "RolloutStats",
    "Scheduler",
    "SchedulingPolicy",
    "SeerConfig",
    "SeerCoreError",
    "SeerPolicy",
    "StaleDispatchError",
    "apply_chunk",
    "auto_chunk_size",
    "chunk_budget",
    "group_length_correlation",
    "kv_footprint",
    "make_policy",
    "run_dispatch_microbench",
    "validate_chunk",
]
