"""Service-side part of grouped speculation: engine RPCs, the draft server, the per-engine draft clients, metrics.

The Seer rollout service owns one :class:`GroupedSpeculation` when ``seer.spec.enabled``. It names each chunk with
the group tag the engine drafter reads (:mod:`seer_verl.speculative.request_tag`), feeds every completed chunk to the
draft server (DGDS), runs one :class:`~seer_verl.speculative.draft_server.DraftClient` per engine during a batch, and at
the end of the batch releases the batch's groups everywhere and turns the engines' step logs into ``seer/sd_*``
metrics, split into the bulk and the tail phase (tail = after 90% of the samples finished, as in the bench).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from seer_verl.aio import bounded
from seer_verl.backends import VLLM, EngineBackend
from seer_verl.core import Dispatch, RolloutRequest
from seer_verl.speculative.config import SpecConfig
from seer_verl.speculative.draft_server import DraftClient, GroupedDraftServer
from seer_verl.speculative.request_tag import format_request_id

__all__ = ["GroupedSpeculation", "engine_rpc", "sd_metrics"]

logger = logging.getLogger(__name__)


def _rpc_ref(handle: Any, method: str, args: tuple, timeout: float, backend: EngineBackend) -> Any:
    return handle.__ray_call__.remote(backend.rpc_in_server, method, args, timeout)


async def engine_rpc(handle: Any, method: str, args: tuple = (), timeout: float = 30.0,
                     backend: EngineBackend = VLLM) -> list[Any]:
    """``method(*args)`` on every worker of one rollout server's engine (Seer's worker extension); one result per
    worker."""
    # the engine side gives up after ``timeout`` (+5 s); a server that never runs the call is not waited for either
    return await bounded(_rpc_ref(handle, method, args, timeout, backend), timeout + 30.0, f"engine RPC {method}")


def engine_rpc_sync(handles: list[Any], method: str, args: tuple = (), timeout: float = 30.0,
                    backend: EngineBackend = VLLM) -> list[list[Any]]:
    """:func:`engine_rpc` on every engine, from synchronous code (e.g. the bench between policies)."""
    import ray

    return ray.get([_rpc_ref(h, method, args, timeout, backend) for h in handles], timeout=timeout + 30)


def sd_metrics(step_logs: list[list[tuple]], tail_start: float | None) -> dict[str, float]:
    """``seer/sd_*`` from the engines' per-step logs ``(time, rows, probes, drafted, accepted, g_h, g_l)``."""
    out: dict[str, float] = {}
    phases = {"": lambda t: True}
    if tail_start is not None:
        phases["bulk_"] = lambda t: t < tail_start
        phases["tail_"] = lambda t: t >= tail_start
    for name, keep in phases.items():
        steps = [s for log in step_logs for s in log if keep(s[0])]
        rows = sum(s[1] for s in steps)
        drafted = sum(s[3] for s in steps)
        accepted = sum(s[4] for s in steps)
        on = sum(1 for s in steps if s[3] > 0)
        out[f"seer/sd_{name}steps"] = float(len(steps))
        out[f"seer/sd_{name}draft_tokens"] = float(drafted)
        out[f"seer/sd_{name}accepted_tokens"] = float(accepted)
        out[f"seer/sd_{name}acceptance_rate"] = accepted / drafted if drafted else 0.0
        # tokens each running request gains per engine step (1 = no speculation)
        out[f"seer/sd_{name}tokens_per_step"] = (rows + accepted) / rows if rows else 1.0
        out[f"seer/sd_{name}steps_on_frac"] = on / len(steps) if steps else 0.0
        out[f"seer/sd_{name}mean_batch"] = rows / len(steps) if steps else 0.0
    # verl's names for the same quantities (verl logs rollout/spec_accept_rate and rollout/spec_accept_length from
    # per-request engine stats): accepted / drafted, and tokens per verification step (1 + accepted / steps)
    out["seer/spec_accept_rate"] = out["seer/sd_acceptance_rate"]
    out["seer/spec_accept_length"] = out["seer/sd_tokens_per_step"]
    return out


class GroupedSpeculation:
    """Args: spec config, the engines' server handles (service order)."""

    def __init__(self, spec: SpecConfig, handles: list[Any], backend: EngineBackend = VLLM) -> None:
        self.spec = spec
        self.handles = handles
        self.backend = backend
        self.settings = spec.engine_settings()
        self.server: Any = None
        self.server_name: str | None = None  # named Ray actor (tests kill it to check draft-server loss)
        self.clients: list[DraftClient] = []
        self.batch_no = 0
        self._gids: set[str] = set()
        self._configured = False
        self._stats: list[dict[str, Any]] = []

    # ------------------------------------------------------------------------------------------ batch life
    async def begin_batch(self, alive: list[int]) -> None:
        self.batch_no += 1
        self._gids = set()
        if not self._configured:
            await asyncio.gather(*(engine_rpc(self.handles[e], "seer_sd_configure", (self.settings.as_dict(),),
                                              backend=self.backend) for e in alive))
            self._configured = True
        if self.spec.dgds:
            if self.server is None:
                self.server_name = f"seer-dgds-{os.getpid()}-{id(self):x}"
                import ray
                from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

                # on the service's node (this process), not on an engine's node that may be lost
                here = NodeAffinitySchedulingStrategy(
                    node_id=ray.get_runtime_context().get_node_id(), soft=True)
                self.server = GroupedDraftServer.remote_class().options(
                    name=self.server_name, scheduling_strategy=here).remote(
                    max_depth=64, default_ttl_s=self.spec.group_ttl_s)
            self.clients = [DraftClient(e, self.server, self._pusher(e), self.spec.sync_interval_s) for e in
                            range(len(self.handles))]
            for e in alive:
                self.clients[e].start()

    def _pusher(self, e: int):
        async def push(method: str, args: tuple) -> Any:
            return await engine_rpc(self.handles[e], method, args, backend=self.backend)
        return push

    def request_id(self, d: Dispatch, req: RolloutRequest) -> str:
        """vLLM request id of a dispatched chunk (carries the group tag); registers the group with the engine's
        draft client."""
        gid = f"b{self.batch_no}g{req.group_id}"
        if gid not in self._gids:
            self._gids.add(gid)
            if self.server is not None:
                self.server.register_group.remote(gid, self.spec.group_ttl_s)
        if self.clients:
            self.clients[d.engine_id].activate(gid)
        return format_request_id(self.batch_no, req.group_id, req.index_in_group, req.prompt_len, req.is_probe,
                                 d.req_id, d.chunk_index, d.dispatch_id)

    def chunk_done(self, engine_id: int, req: Any, start: int, tokens: list[int]) -> None:
        """A chunk's tokens (response positions ``start..``) generated on ``engine_id``: to the draft server
        (fire and forget), and marked as already present on that engine."""
        if self.server is None or not tokens:
            return
        gid = f"b{self.batch_no}g{req.group_id}"
        self.server.append.remote(gid, req.index_in_group, start, list(tokens))
        self.clients[engine_id].local_tokens(gid, req.index_in_group, start + len(tokens))

    async def end_batch(self, alive: list[int], tail_start: float | None) -> dict[str, float]:
        for c in self.clients:
            await c.stop()
        gids = sorted(self._gids)
        stats: list[dict[str, Any]] = []
        for e in alive:
            try:
                await engine_rpc(self.handles[e], "seer_sd_release", (gids,), backend=self.backend)
                stats.extend(await engine_rpc(self.handles[e], "seer_sd_stats", backend=self.backend))
            except Exception as exc:  # an engine lost during the batch has no stats to give
                logger.warning("Seer SD: no stats from engine %d: %s", e, exc)
        server_stats: dict[str, Any] = {}
        if self.server is not None:
            try:
                self.server.release_groups.remote(gids)
                server_stats = await bounded(self.server.stats.remote(), 10.0, "draft server stats")
            except Exception as exc:
                logger.warning("Seer SD: draft server stats unavailable: %s", exc)
        self._stats = stats
        m = sd_metrics([s["steps"] for s in stats], tail_start)
        m["seer/sd_server_outages"] = float(sum(c.outages for c in self.clients))
        m["seer/sd_server_up_at_end"] = float(all(c.server_up for c in self.clients)) if self.clients else 0.0
        m["seer/sd_cross_engine_tokens"] = float(sum(c.pushed_tokens for c in self.clients))
        steps = sum(s["totals"]["steps"] for s in stats)
        looked_up = sum(s.get("drafts_looked_up", 0) for s in stats)
        m["seer/sd_engine_tree_share"] = sum(s.get("drafts_from_engine_tree", 0) for s in stats) / max(1, looked_up)
        m["seer/sd_propose_us_per_step"] = 1e6 * sum(s["totals"]["propose_s"] for s in stats) / max(1, steps)
        # the draft budget's inputs at the end of the batch, averaged over engines: the fitted cost of a step
        # (c0 + c_seq*B + c_tok*query_tokens) and the acceptance of the first two draft positions
        fits = [s["cost_fit"]["c0_c_seq_c_tok"] for s in stats if s.get("cost_fit")]
        for i, name in enumerate(("c0", "c_seq", "c_tok")):
            if fits:
                m[f"seer/sd_cost_{name}_ms"] = 1e3 * sum(f[i] for f in fits) / len(fits)
        betas = [s["beta"] for s in stats if s.get("beta")]
        for j in range(2):
            if betas and all(len(b) > j for b in betas):
                m[f"seer/sd_beta{j + 1}"] = sum(b[j] for b in betas) / len(betas)
        if server_stats:
            m["seer/sd_server_append_us"] = 1e6 * server_stats["append_s"] / max(1, server_stats["appends"])
        self.clients = []
        return m

    def engine_step_logs(self) -> list[dict[str, Any]]:
        """Per engine of the last batch: its drafter's step log ``(time, rows, probes, drafted, accepted, g_h,
        g_l, predicted saving, margin)`` and its final calibration/cost state (for the bench report: what the budget did, step by step)."""
        return [{"steps": [list(x) for x in s.get("steps", [])], "calibration": s.get("calibration"),
                 "cost_fit": s.get("cost_fit"), "beta": s.get("beta"), "margin": s.get("margin")}
                for s in self._stats]

    async def shutdown(self) -> None:
        for c in self.clients:
            await c.stop()
        if self.server is not None:
            import ray

            ray.kill(self.server, no_restart=True)
            self.server = None

