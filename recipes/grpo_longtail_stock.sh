#!/usr/bin/env bash
# GRPO with stock rollout on the long-tailed shape (8 prompts x 8 samples, up to 512 tokens, KV-pressured engines)
# on verl's default trainer: configs/grpo_longtail_stock.yaml. Usage: recipes/grpo_longtail_stock.sh [hydra overrides...]
exec "$(dirname "${BASH_SOURCE[0]}")/run_verl.sh" grpo_longtail_stock "$@"
