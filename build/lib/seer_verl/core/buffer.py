"""The Request Buffer: every request and group of one rollout (paper §2, Fig. 5).

The paper's Request Buffer keeps a global view of all requests of the rollout: a request waits there
between chunks, with its group id, prompt length, original ``max_tokens`` and generated-token count.
:class:`RequestBuffer` is that table. It owns the :class:`~seer_verl.core.request.RolloutRequest`
objects (``req_id`` = row index = output order) and the :class:`~seer_verl.core.request.RequestGroup`
index, and designates one speculative request ("probe") per group: the group's first row.

Which requests are waiting, in flight or finished is tracked by the controller; the buffer only
holds the data.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from .request import RequestGroup, RolloutRequest

__all__ = ["RequestBuffer"]


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


class RequestBuffer:
    """All requests of one rollout, indexed by ``req_id`` and grouped by ``group_id``.

    Build it with :meth:`from_prompts` (one entry per prompt, expanded to ``group_size`` rows) or
    :meth:`from_rows` (one entry per response row, as in a verl batch already repeated ``n`` times;
    the rows of a group need not be adjacent). The constructor takes explicit requests.

    The constructor (re)assigns ``index_in_group`` (order of appearance within the group) and
    ``is_probe`` (True exactly for each group's first row).
    """

    __slots__ = ("_requests", "_groups")

    def __init__(self, requests: Sequence[RolloutRequest]) -> None:
        if len(requests) == 0:
            raise ValueError("a rollout needs at least one request; got an empty batch")
        groups: dict[int, RequestGroup] = {}
        for position, req in enumerate(requests):
            if req.req_id != position:
                raise ValueError(
                    f"request at position {position} has req_id {req.req_id}; req_id must equal the row index"
                )
            _check_int(f"prompt_len of request {position}", req.prompt_len, 0)
            _check_int(f"max_tokens of request {position}", req.max_tokens, 1)
            if req.true_len is not None:
                _check_int(f"true_len of request {position}", req.true_len, 0)
            group = groups.get(req.group_id)
            if group is None:
                group = RequestGroup(req.group_id, [], position, req.max_tokens)
                groups[req.group_id] = group
            req.index_in_group = len(group.req_ids)
            req.is_probe = position == group.probe_id
            group.req_ids.append(position)
            group.max_tokens = max(group.max_tokens, req.max_tokens)
        self._requests: list[RolloutRequest] = list(requests)
        self._groups = groups

    # -- builders -------------------------------------------------------------------------------

    @classmethod
    def from_prompts(
        cls,
        prompts: Sequence[tuple[int, int]],
        group_size: int,
        max_tokens: int,
        true_lens: Sequence[int] | None = None,
    ) -> RequestBuffer:
        """One entry ``(group_id, prompt_len)`` per prompt, each expanded to ``group_size`` rows.

        The rows of prompt ``i`` get ``req_id = i * group_size + k`` for ``k < group_size`` (the layout
        of verl's ``repeat(n, interleave=True)``). ``true_lens``, if given, has one entry per row.
        """
        _check_int("group_size", group_size, 1)
        rows = [(gid, plen) for gid, plen in prompts for _ in range(group_size)]
        seen: set[int] = set()
        for gid, _ in prompts:
            if gid in seen:
                raise ValueError(f"group_id {gid} appears twice in the prompt list")
            seen.add(gid)
        return cls.from_rows(rows, max_tokens, true_lens)

    @classmethod
    def from_rows(
        cls,
        rows: Sequence[tuple[int, int]],
        max_tokens: int | Sequence[int],
        true_lens: Sequence[int] | None = None,
    ) -> RequestBuffer:
        """One entry ``(group_id, prompt_len)`` per response row; ``req_id`` = position in ``rows``.

        ``max_tokens`` is one budget for every row or one per row; ``true_lens`` (simulation/oracle
        only) is one true response length per row.
        """
        n = len(rows)
        if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
            budgets: Sequence[int] = [max_tokens] * n
        else:
            budgets = list(max_tokens)  # type: ignore[arg-type]
            if len(budgets) != n:
                raise ValueError(f"max_tokens has {len(budgets)} entries for {n} rows")
        if true_lens is not None and len(true_lens) != n:
            raise ValueError(f"true_lens has {len(true_lens)} entries for {n} rows")
        requests = [
            RolloutRequest(
                req_id=i,
                group_id=gid,
                index_in_group=0,
                prompt_len=plen,
                max_tokens=budgets[i],
                true_len=None if true_lens is None else true_lens[i],
            )
            for i, (gid, plen) in enumerate(rows)
        ]
        return cls(requests)

    def append(self, group_id: int, prompt_len: int, max_tokens: int, true_len: int | None = None) -> RolloutRequest:
        """Add one request while the rollout runs (an agent's next turn, or a sample that arrived late); its
        ``req_id`` is the next free position. It joins ``group_id`` (a new group if unknown, of which it is the
        probe; else not a probe). Nothing changes when the values are invalid (ValueError naming them)."""
        position = len(self._requests)
        _check_int(f"prompt_len of request {position}", prompt_len, 0)
        _check_int(f"max_tokens of request {position}", max_tokens, 1)
        if true_len is not None:
            _check_int(f"true_len of request {position}", true_len, 0)
        req = RolloutRequest(req_id=position, group_id=group_id, index_in_group=0, prompt_len=prompt_len,
                             max_tokens=max_tokens, true_len=true_len)
        group = self._groups.get(group_id)
        if group is None:
            group = self._groups[group_id] = RequestGroup(group_id, [], position, max_tokens)
        req.index_in_group = len(group.req_ids)
        req.is_probe = position == group.probe_id
        group.req_ids.append(position)
        group.max_tokens = max(group.max_tokens, max_tokens)
        self._requests.append(req)
        return req

    # -- access ---------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RolloutRequest]:
        """All requests in ``req_id`` order (the list itself; do not reorder it)."""
        return self._requests

    @property
    def groups(self) -> dict[int, RequestGroup]:
        """Groups by ``group_id``, in order of first appearance."""
        return self._groups

    def group(self, group_id: int) -> RequestGroup:
        return self._groups[group_id]

    def group_of(self, req: RolloutRequest) -> RequestGroup:
        return self._groups[req.group_id]

    def probes(self) -> list[RolloutRequest]:
        """Each group's speculative request, in group order."""
        return [self._requests[g.probe_id] for g in self._groups.values()]

    @property
    def num_groups(self) -> int:
        return len(self._groups)

    def __len__(self) -> int:
        return len(self._requests)

    def __getitem__(self, req_id: int) -> RolloutRequest:
        return self._requests[req_id]

    def __iter__(self) -> Iterator[RolloutRequest]:
        return iter(self._requests)
