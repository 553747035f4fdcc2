#!/usr/bin/env bash
# PPO with Seer rollout on the long-tailed shape (32 prompts x 1 sample, up to 512 tokens, KV-pressured engines)
# on verl's DataProto trainer: configs/ppo_longtail_seer.yaml. Usage: recipes/ppo_longtail_seer.sh [hydra overrides...]
exec "$(dirname "${BASH_SOURCE[0]}")/run_verl.sh" ppo_longtail_seer "$@"
