# Two commands do everything on a fresh machine:
#   make demo   set up, prepare model + data, the headline rollout comparison: stock verl vs Seer, 3 interleaved
#               replayed repeats with intervals, on a small KV-pressured workload (make bench: every policy, default)
#   make test   set up, run the test suite (CI; the checks marked `full` are left to `make test-full`)
VENV ?= .venv
PY := $(VENV)/bin/python

# the demo's workload: 3 prompts x 8 samples, up to 512 tokens, 2 engines x 0.125 GiB KV (capacity / peak demand ~0.4)
DEMO := policies=[stock,seer] repeats=3 workload.num_prompts=3 workload.max_tokens=512 engines.kv_cache_gb=0.125 \
	out=runs/demo/report.json

.PHONY: setup demo bench test test-full test-fast

setup:
	bash scripts/setup.sh

demo: setup
	$(VENV)/bin/seer-verl prepare
	$(VENV)/bin/seer-verl bench $(DEMO) $(ARGS)

bench: setup
	$(VENV)/bin/seer-verl prepare
	$(VENV)/bin/seer-verl bench $(ARGS)

test: setup
	$(PY) -m pytest -q -rs --durations=15 -m "not full" $(ARGS)

# everything, the `full` checks too: randomized engine faults, multi-node, SD losslessness on SmolLM2, the stock V1
# and killed-and-resumed trainer runs (~75 min on this host against ~45 for `make test`)
test-full: setup
	$(PY) -m pytest -q -rs --durations=25 $(ARGS)

test-fast: setup
	$(PY) -m pytest -q -m "not engines and not trainer" $(ARGS)
