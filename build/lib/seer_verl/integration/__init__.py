"""Adapters between seer_verl and verl 0.9.1 (agent-loop manager, load balancer, engine discovery/monitoring)."""
