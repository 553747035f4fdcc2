#!/usr/bin/env bash
# GRPO with Seer rollout on verl's default trainer (V1, TransferQueue): configs/grpo_seer_v1.yaml.
# Usage: recipes/grpo_seer_v1.sh [hydra overrides...]
exec "$(dirname "${BASH_SOURCE[0]}")/run_verl.sh" grpo_seer_v1 "$@"
