"""verl's own load balancer, unchanged, plus a record of where and when each request ran.

The benchmark's ``stock`` policy must be verl as users run it. ``RecordingLoadBalancer`` subclasses verl's
``GlobalRequestLoadBalancer`` and calls the parent for every decision (sticky session + least in-flight); it only
timestamps acquire/release so the report can show per-request finish times and per-engine busy intervals.
verl passes the row's ``priority`` (the row index; AgentLoopManager sets ``arange(B)``) at acquire time because
this class declares it in ``require_acquire_fields``.
"""

from __future__ import annotations

import time
from typing import Any

from verl.workers.rollout.router import GlobalRequestLoadBalancer


class RecordingLoadBalancer(GlobalRequestLoadBalancer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._events: list[dict[str, Any]] = []
        self._open: dict[str, dict[str, Any]] = {}

    def require_acquire_fields(self) -> list[str]:
        return ["priority"]

    def require_release_fields(self) -> list[str]:
        return ["request_id"]

    def acquire_server(self, request_id: str, priority: int = 0, **extra: Any) -> tuple[str, Any]:
        server_id, handle = super().acquire_server(request_id)
        self._open[request_id] = {"row": int(priority), "server": server_id, "start": time.time()}
        return server_id, handle

    def release_server(self, server_id: str, request_id: str | None = None) -> None:
        super().release_server(server_id, request_id=request_id)
        ev = self._open.pop(request_id, None) if request_id is not None else None
        if ev is not None:
            ev["end"] = time.time()
            self._events.append(ev)

    def pop_events(self) -> list[dict[str, Any]]:
        """Completed requests since the last call: ``{row, server, start, end}`` (wall-clock seconds)."""
        ev, self._events = self._events, []
        return ev
