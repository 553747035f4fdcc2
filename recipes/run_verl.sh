#!/usr/bin/env bash
# Common launcher: verl's own trainer (python -m verl.trainer.main_ppo) with a config from configs/.
# Usage: recipes/run_verl.sh <config-name> [hydra overrides...]
# On CPU the environment comes from configs/cpu.yaml (`seer-verl env`); model and dataset from `seer-verl prepare`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONFIG=${1:?usage: run_verl.sh <config-name> [hydra overrides...]}; shift
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x "$ROOT/.venv/bin/python" ]; then source "$ROOT/.venv/bin/activate"; fi
if [ "${SEER_DEVICE:-cpu}" = cpu ]; then eval "$(seer-verl env)"; fi   # VERL_PLATFORM=cpu etc.
seer-verl prepare >/dev/null                                          # model + dataset, cached
# Seer configs: check every seer.* key against verl's rollout settings before verl starts any engine or worker
if [[ "$CONFIG" == *seer* ]]; then seer-verl check-config --config-name="$CONFIG" "$@"; fi
exec python -m verl.trainer.main_ppo --config-path "$ROOT/configs" --config-name "$CONFIG" "$@"
