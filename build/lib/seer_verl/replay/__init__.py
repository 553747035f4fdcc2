"""Replayable rollouts: every policy samples the same tokens, so a comparison measures scheduling alone.

With ``seer.replay_seed`` set, the token a sample draws at sequence position ``p`` is the Gumbel-max sample of the
model's (temperature / top-p) distribution at ``p`` under noise keyed by ``(replay_seed, sample identity, p)``
(:mod:`seer_verl.replay.keys`). Nothing else enters the draw: not the batch it shares, the engine, the chunk
boundaries, the scheduling policy or speculation. It is still exact sampling from the model's distribution (one
independent exponential race per position), and ``rollout_log_probs`` stay the model's.

* :mod:`seer_verl.replay.keys` — the keys (stdlib only);
* :mod:`seer_verl.replay.vllm_sampler` — the vLLM engine side, a ``vllm.general_plugins`` entry point: keyed noise
  in the CPU sampler, and exact-match verification of draft tokens (accept a draft token iff it equals the sample
  the target draws at that position: acceptance probability p(token), as rejection sampling of a deterministic
  draft, and the same tokens as without speculation);
* :mod:`seer_verl.replay.agent_loop` — the verl side: agent-loop workers that attach each sample's key
  (``(step, dataset index, rollout_n)``, verl's own trajectory identity) to its sampling params;
* :mod:`seer_verl.replay.identity` — token identity of policies' outputs and paired-ratio intervals.
"""
