"""A deterministic local tool and tool-call parser, so verl's ``ToolAgentLoop`` runs several turns on any model.

Loaded by verl's agent-loop workers through ``actor_rollout_ref.rollout.multi_turn.function_tool_path`` (verl
executes this file in each worker), with ``multi_turn.format=seer_test_every_turn``:

* ``count_tokens`` (a ``@function_tool``): answers "The last answer had N tokens." (no network, no state);
* the ``seer_test_every_turn`` parser reads every assistant turn as a call of ``count_tokens`` with its length, and
  asks the engine to stop a turn at any of 6,000 token ids (about 12% of a 49K vocabulary), so that a random
  model's turns end after a few tokens, as a tool-calling model's do at its tool-call end token.

The conversation then alternates assistant turns and tool responses until ``multi_turn.max_assistant_turns`` or
the response length is reached, exercising the same code paths (turn masks, tool-response tokens, ``num_turns``,
stop tokens) as a real tool-calling model would.
"""

from __future__ import annotations

import json

from verl.experimental.agent_loop.tool_parser import FunctionCall, ToolParser
from verl.tools.function_tool import function_tool

STOP_IDS = list(range(1000, 7000))


@function_tool
def count_tokens(n: int) -> str:
    """Count the tokens of the assistant's last answer.

    Args:
        n: number of tokens the assistant generated in its last turn.
    """
    return f"The last answer had {int(n)} tokens."


@ToolParser.register("seer_test_every_turn")
class EveryTurnCallsTheTool(ToolParser):
    @property
    def stop_token_ids(self) -> list[int]:
        return STOP_IDS

    async def extract_tool_calls(self, responses_ids, tools=None):
        return "", [FunctionCall(name="count_tokens", arguments=json.dumps({"n": len(responses_ids)}))]
