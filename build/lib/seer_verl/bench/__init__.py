"""Benchmarks: `seer-verl bench` (rollout policies on real engines) and `seer-verl dispatch-bench`."""
