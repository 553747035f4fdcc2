#!/usr/bin/env bash
# GRPO with Seer rollout: grpo_stock plus configs/seer.yaml (SeerAgentLoopManager + Seer knobs). Same trainer.
# Usage: recipes/grpo_seer.sh [hydra overrides...]   e.g. seer.chunk_size=64
exec "$(dirname "${BASH_SOURCE[0]}")/run_verl.sh" grpo_seer "$@"
