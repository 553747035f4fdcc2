"""Randomized real-engine fault runs: faults injected into a running Seer rollout (``inject``), the seeded campaign
that checks every sample comes back once, in order, token-identical (``campaign``), and its command (``cli``)."""
