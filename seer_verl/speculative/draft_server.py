"""DGDS — the distributed grouped draft server (paper §3.4 / digest §5.2), as a Ray actor plus per-engine clients.

Workflow (the paper's four steps, mapped onto verl's processes):

1. **Asynchronous append.** Every completed chunk's tokens reach the Seer service, which forwards them to the
   server with :meth:`GroupedDraftServer.append` ``(gid, sibling, start, tokens)`` without waiting (fire and
   forget). A chunk is the batching unit the paper leaves open ("a fixed number of tokens per request").
2. **Global aggregation.** The server keeps, per group, each sibling's token log (isolated by sibling, so requests
   never interfere) and the group's arctic suffix tree (for server-side statistics and lookups).
3. **Periodic fetch.** One :class:`DraftClient` per engine registers the groups active on that engine (TTL as a
   safety net) and every ``sync_interval_s`` pulls the *increments* past its local cache state
   (``known[(gid, sibling)] = tokens already on the engine``) with :meth:`GroupedDraftServer.fetch`, then pushes
   them into the engine worker's local trees (``collective_rpc("seer_sd_apply")``), off the decode critical path.
4. **Local speculation.** The engine's :class:`~seer_verl.speculative.proposer.GroupSuffixProposer` drafts from its local
   trees every step; its own requests' tokens enter those trees live.

The server is stateless towards clients (each fetch carries the client's cache state), so a restarted server
just fills up again from new appends. While it is unreachable the clients switch speculation off on their
engines and switch it back on at the first successful fetch (``seer/sd_server_outages``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from seer_verl.aio import bounded
from seer_verl.speculative.group_tree import GroupDraftTrees

__all__ = ["GroupedDraftServer", "DraftClient", "Increment"]

logger = logging.getLogger(__name__)

#: (gid, sibling, start offset in the response, tokens)
Increment = tuple[str, int, int, list[int]]


class _SiblingLog:
    __slots__ = ("base", "tokens")

    def __init__(self, base: int) -> None:
        self.base = base  # response offset of tokens[0] (> 0 only if the server missed the beginning)
        self.tokens: list[int] = []

    @property
    def end(self) -> int:
        return self.base + len(self.tokens)


class GroupedDraftServer:
    """Holds every group's sibling token logs and suffix tree. Plain class; run it as a Ray actor
    (:meth:`remote_class`) or in-process in tests."""

    def __init__(self, max_depth: int = 64, default_ttl_s: float = 900.0) -> None:
        self.trees = GroupDraftTrees(max_depth=max_depth)
        self.default_ttl_s = float(default_ttl_s)
        self._logs: dict[str, dict[int, _SiblingLog]] = {}
        self._expiry: dict[str, float] = {}
        self._counters = {"appends": 0, "tokens": 0, "fetches": 0, "fetched_tokens": 0, "expired": 0,
                          "append_s": 0.0, "fetch_s": 0.0}

    @classmethod
    def remote_class(cls) -> Any:
        import ray

        return ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)(cls)

    def register_group(self, gid: str, ttl_s: float | None = None) -> None:
        self._logs.setdefault(gid, {})
        self.trees.register_group(gid)
        self._expiry[gid] = time.monotonic() + (self.default_ttl_s if ttl_s is None else float(ttl_s))

    def release_groups(self, gids: list[str]) -> None:
        for gid in gids:
            self._logs.pop(gid, None)
            self._expiry.pop(gid, None)
            self.trees.release_group(gid)

    def append(self, gid: str, sibling: int, start: int, tokens: list[int]) -> int:
        """Tokens of response positions ``start..`` of one sibling; the part already held is ignored."""
        t0 = time.perf_counter()
        self._sweep()
        if gid not in self._logs:
            self.register_group(gid)
        logs = self._logs[gid]
        log = logs.get(sibling)
        if log is None:
            log = logs[sibling] = _SiblingLog(start)
        new: list[int] = []
        if start <= log.end < start + len(tokens):
            new = [int(t) for t in tokens[log.end - start:]]
            log.tokens.extend(new)
            self.trees.extend(gid, sibling, new)
        self._expiry[gid] = max(self._expiry.get(gid, 0.0), time.monotonic() + self.default_ttl_s)
        self._counters["appends"] += 1
        self._counters["tokens"] += len(new)
        self._counters["append_s"] += time.perf_counter() - t0
        return len(new)

    def fetch(self, gids: list[str], known: dict[str, dict[int, int]]) -> list[Increment]:
        """Increments of ``gids`` beyond the caller's cache state ``known[gid][sibling]`` (tokens it holds)."""
        t0 = time.perf_counter()
        out: list[Increment] = []
        for gid in gids:
            have = known.get(gid, {})
            for sib, log in self._logs.get(gid, {}).items():
                start = max(have.get(sib, 0), log.base)
                if start < log.end:
                    out.append((gid, sib, start, log.tokens[start - log.base:]))
        self._counters["fetches"] += 1
        self._counters["fetched_tokens"] += sum(len(x[3]) for x in out)
        self._counters["fetch_s"] += time.perf_counter() - t0
        return out

    def stats(self) -> dict[str, Any]:
        return {**self._counters, "groups": len(self._logs), "trees": self.trees.stats()}

    def _sweep(self) -> None:
        now = time.monotonic()
        dead = [g for g, t in self._expiry.items() if t < now]
        if dead:
            self._counters["expired"] += len(dead)
            self.release_groups(dead)


class DraftClient:
    """The draft client of one engine (lives in the Seer service's event loop).

    Args:
        engine_id: index of the engine.
        server: the :class:`GroupedDraftServer` actor handle.
        push: ``async push(method, args)`` running a ``seer_sd_*`` RPC on the engine's workers.
        sync_interval_s: fetch period.
        rpc_timeout_s: bound on one fetch or push; a slower server counts as down.
    """

    def __init__(self, engine_id: int, server: Any, push: Callable[[str, tuple], Awaitable[Any]],
                 sync_interval_s: float, rpc_timeout_s: float = 10.0) -> None:
        self.engine_id = engine_id
        self.server = server
        self.push = push
        self.sync_interval_s = sync_interval_s
        self.rpc_timeout_s = rpc_timeout_s
        self.active: set[str] = set()
        self.known: dict[str, dict[int, int]] = {}
        self.server_up = True
        self.outages = 0
        self.pushed_tokens = 0
        self.fetches = 0
        self._task: asyncio.Task | None = None

    def activate(self, gid: str) -> None:
        self.active.add(gid)

    def local_tokens(self, gid: str, sibling: int, end: int) -> None:
        """The engine itself produced response positions ``..end`` of this sibling: it already has them."""
        g = self.known.setdefault(gid, {})
        g[sibling] = max(g.get(sibling, 0), end)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=5.0)  # never wait on a call that does not finish cancelling
            self._task = None

    async def sync_once(self) -> int:
        if not self.active:
            return 0
        gids = sorted(self.active)
        try:
            inc = await bounded(self.server.fetch.remote(gids, self.known), self.rpc_timeout_s, "draft server fetch")
        except Exception as exc:  # server gone or restarting: no cross-engine drafts, and no speculation
            if self.server_up:
                self.server_up = False
                self.outages += 1
                logger.warning("Seer draft server unreachable from engine %d (%s): speculation off there",
                               self.engine_id, exc)
                await self._safe_push("seer_sd_suspend", (True,))
            return 0
        if not self.server_up:
            self.server_up = True
            logger.warning("Seer draft server back for engine %d: speculation on again", self.engine_id)
            await self._safe_push("seer_sd_suspend", (False,))
        self.fetches += 1
        if not inc:
            return 0
        await self._safe_push("seer_sd_apply", (inc,))
        n = 0
        for gid, sib, start, toks in inc:
            self.local_tokens(gid, sib, start + len(toks))
            n += len(toks)
        self.pushed_tokens += n
        return n

    async def _safe_push(self, method: str, args: tuple) -> None:
        try:
            await bounded(self.push(method, args), self.rpc_timeout_s, method)
        except Exception as exc:  # the engine may be gone; engine failures are handled by the service
            logger.warning("Seer draft client: %s on engine %d failed: %s", method, self.engine_id, exc)

    async def _loop(self) -> None:
        while True:
            t0 = time.monotonic()
            await self.sync_once()
            await asyncio.sleep(max(0.0, self.sync_interval_s - (time.monotonic() - t0)))
