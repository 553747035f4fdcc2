"""Where the project's files are and the environment a CPU run needs: a leaf module every layer may import.

* :func:`config_dir`: the Hydra configs (``seer_verl/configs/``, shipped in the wheel; the repository's ``configs/``
  links to it; ``SEER_VERL_CONFIGS`` overrides). Hydra finds them as ``pkg://seer_verl.configs``.
* :func:`cpu_env`: the environment variables of a CPU run (``ray_kwargs.ray_init.runtime_env.env_vars`` of
  ``configs/cpu.yaml``), as ``seer-verl env`` prints them.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["CONFIG_DIR", "config_dir", "cpu_env"]

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def config_dir() -> Path:
    """The configs folder (the package's ``configs/``, or ``SEER_VERL_CONFIGS``); it must hold cpu.yaml."""
    import os

    d = Path(os.environ.get("SEER_VERL_CONFIGS", CONFIG_DIR))
    if not (d / "cpu.yaml").is_file():
        raise FileNotFoundError(
            f"seer_verl configs not found at {d} (no cpu.yaml there); unset SEER_VERL_CONFIGS to use the packaged "
            f"ones, or point it at a folder with seer_verl's configs"
        )
    return d


def cpu_env(config: str = "cpu") -> dict[str, str]:
    """The environment variables a CPU run needs: ``ray_kwargs.ray_init.runtime_env.env_vars`` of
    configs/<config>.yaml (the same dict verl hands to every Ray worker)."""
    from omegaconf import OmegaConf

    path = config_dir() / f"{config}.yaml"
    cfg = OmegaConf.load(path)
    env = OmegaConf.select(cfg, "ray_kwargs.ray_init.runtime_env.env_vars", default=None) or {}
    out = {str(k): str(v) for k, v in env.items()}
    for k in out:  # `seer-verl env` output is eval'ed by shells: a key must be a plain variable name
        if not _ENV_KEY.fullmatch(k):
            raise ValueError(f"ray_kwargs.ray_init.runtime_env.env_vars key {k!r} in {path} is not allowed: "
                             f"an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
    return out
