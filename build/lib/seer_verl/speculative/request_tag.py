"""Group identity carried in vLLM request ids, so an engine-side drafter knows which siblings a request has.

vLLM 0.32's drafter hook sees request ids but no request metadata that survives chunking, and verl's server
passes the caller's ``request_id`` straight to vLLM (vLLM appends ``-<8 random chars>``). The Seer service
therefore names each chunk::

    seer-b<batch>-g<group>-s<sibling>-p<prompt_len>-h<probe 0|1>-r<row>-c<chunk>-d<dispatch>

``batch`` numbers the service's rollouts (a new batch never mixes with a stale tree); ``group``/``sibling`` locate the response in its GRPO group (the drafter's tree and ``seq_id``); ``prompt_len``
is the *original* prompt length, so a continuation chunk (prompt = original prompt + tokens so far) can tell
its earlier response tokens from its prompt; ``probe`` marks the group's speculative request, which the draft
budget favours (paper §5.3, λ). Anything that does not parse is not a Seer request (e.g. stock verl traffic on
the same engine): :func:`parse` returns ``None`` and the drafter treats it as a group of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["RequestTag", "format_request_id", "parse"]

_RE = re.compile(r"^seer-b(\d+)-g(\d+)-s(\d+)-p(\d+)-h([01])-r(\d+)-c(\d+)-d(\d+)")


@dataclass(frozen=True, slots=True)
class RequestTag:
    batch: int
    group: int
    sibling: int
    prompt_len: int
    probe: bool
    row: int
    chunk: int
    dispatch: int

    @property
    def gid(self) -> str:
        """Group key used by the draft trees and the draft server."""
        return f"b{self.batch}g{self.group}"


def format_request_id(batch: int, group: int, sibling: int, prompt_len: int, probe: bool, row: int, chunk: int,
                      dispatch: int) -> str:
    return f"seer-b{batch}-g{group}-s{sibling}-p{prompt_len}-h{int(bool(probe))}-r{row}-c{chunk}-d{dispatch}"


def parse(request_id: str) -> RequestTag | None:
    """The tag of a Seer request id (with or without vLLM's random suffix); ``None`` for any other id."""
    m = _RE.match(request_id)
    if m is None:
        return None
    b, g, s, p, h, r, c, d = m.groups()
    return RequestTag(int(b), int(g), int(s), int(p), h == "1", int(r), int(c), int(d))
