"""Every recipe's config composes with verl's ppo_trainer, and every Seer one passes Seer's validation (what
``seer-verl check-config`` runs before verl starts): a broken recipe fails here, not after minutes of start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted(p.stem for p in (ROOT / "recipes").glob("*.sh") if p.stem != "run_verl")


def _compose(name: str):
    from hydra import compose, initialize_config_dir

    from seer_verl.paths import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        return compose(name)


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_config_composes_and_validates(recipe):
    from seer_verl.integration.rollout_checks import validate_rollout_config

    assert f"run_verl.sh\" {recipe} " in (ROOT / "recipes" / f"{recipe}.sh").read_text()  # the script runs its config
    cfg = _compose(recipe)
    manager = cfg.actor_rollout_ref.rollout.agent.get("agent_loop_manager_class")
    assert ("seer" in recipe) == (manager is not None and "Seer" in manager), manager
    if manager is not None:
        validate_rollout_config(cfg)
    # fp32 everywhere on CPU: verl's bf16 autocast default runs PyTorch's reference gemm on CPUs without native bf16
    # (an AVX2-only host: a 2-step GRPO test's update_actor 616 s in bf16, 78 s in fp32), and the engines are fp32
    assert cfg.actor_rollout_ref.rollout.dtype == "float32"
    for name, fsdp in (("actor", cfg.actor_rollout_ref.actor.fsdp_config), ("ref", cfg.actor_rollout_ref.ref.fsdp_config),
                       ("critic", cfg.critic.fsdp)):
        assert fsdp.model_dtype == "fp32", name
        assert dict(fsdp.mixed_precision) == dict(param_dtype="fp32", reduce_dtype="fp32", buffer_dtype="fp32"), name


def test_longtail_recipes_have_the_bench_shape_on_verls_default_trainer():
    # the bench's default rollout (configs/bench.yaml) with the response cap and the KV budget scaled down together,
    # so the engines hold the same share of the peak demand: many more requests than fit, stock vLLM preempts
    from omegaconf import OmegaConf

    from seer_verl.paths import config_dir

    bench = OmegaConf.load(Path(config_dir()) / "bench.yaml")
    for name in ("grpo_longtail_stock", "grpo_longtail_seer"):
        cfg = _compose(name)
        assert cfg.trainer.use_v1 and cfg.trainer.n_gpus_per_node == bench.engines.count
        assert cfg.data.train_batch_size == bench.workload.num_prompts
        assert cfg.actor_rollout_ref.rollout.n == bench.workload.group_size
        cap, kv = cfg.data.max_response_length, cfg.actor_rollout_ref.rollout.engine_kwargs.vllm.kv_cache_memory_bytes
        assert cap == bench.workload.max_tokens // 2
        assert kv / cap == bench.engines.kv_cache_gb * 2**30 / bench.workload.max_tokens
