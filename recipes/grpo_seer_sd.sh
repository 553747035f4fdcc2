#!/usr/bin/env bash
# GRPO with Seer rollout + adaptive grouped speculative decoding: grpo_seer plus configs/seer_sd.yaml.
# Usage: recipes/grpo_seer_sd.sh [hydra overrides...]   e.g. seer.spec.mode=fixed
exec "$(dirname "${BASH_SOURCE[0]}")/run_verl.sh" grpo_seer_sd "$@"
