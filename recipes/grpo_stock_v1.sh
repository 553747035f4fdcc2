#!/usr/bin/env bash
# GRPO with stock verl on verl's default trainer (V1, TransferQueue): configs/grpo_stock_v1.yaml.
# Usage: recipes/grpo_stock_v1.sh [hydra overrides...]
exec "$(dirname "${BASH_SOURCE[0]}")/run_verl.sh" grpo_stock_v1 "$@"
