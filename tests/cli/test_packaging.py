"""The wheel a GPU user installs (``pip install /path/to/seer_verl``, not editable) ships everything the package
reads at run time: every Hydra config (Hydra's ``pkg://seer_verl.configs``), the simulator's data, the plugin entry
points; and ``seer-verl check-config`` runs from that install, outside the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # built from a copy of what the wheel is made of, so that setuptools' build/ never lands in the repository
    src = tmp_path_factory.mktemp("src")
    shutil.copytree(ROOT / "seer_verl", src / "seer_verl", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(src)], check=True, capture_output=True, timeout=300)
    (whl,) = out.glob("seer_verl-*.whl")
    return whl


def test_wheel_ships_configs_data_and_entry_points(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    base = ROOT / "seer_verl" / "configs"
    configs = sorted(p.relative_to(base).as_posix() for p in base.rglob("*.yaml"))
    assert "seer.yaml" in configs and "cpu.yaml" in configs and "preset/spec_friendly.yaml" in configs
    missing = [c for c in configs if f"seer_verl/configs/{c}" not in names]
    assert not missing, missing
    data = sorted(p.name for p in (ROOT / "seer_verl" / "sim" / "data").glob("*.json"))
    assert data and all(f"seer_verl/sim/data/{d}" in names for d in data)
    (ep,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(ep).decode()
    for line in ("seer-verl = seer_verl.cli:main", "seer_cpu = seer_verl.compat.cpu_platform",
                 "seer_replay = seer_verl.replay.vllm_sampler:install"):
        assert line in text, text
    assert not any(n.startswith(("tests/", "configs/", "recipes/")) for n in names)  # only the package


def test_check_config_from_a_non_editable_install(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if k != "SEER_VERL_CONFIGS"}
    env["PYTHONPATH"] = str(site)
    run = dict(cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    where = subprocess.run([sys.executable, "-c", "import seer_verl.paths as p; print(p.config_dir())"], **run)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout  # the installed copy, not the repository
    ok = subprocess.run([sys.executable, "-m", "seer_verl.cli", "check-config", "--config-name=grpo_seer_v1"], **run)
    assert ok.returncode == 0 and "Seer config OK" in ok.stdout, ok.stdout + ok.stderr
    bad = subprocess.run([sys.executable, "-m", "seer_verl.cli", "check-config", "--config-name=grpo_seer",
                          "seer.chunk_size=0"], **run)
    assert bad.returncode != 0 and "chunk_size" in bad.stdout + bad.stderr, bad.stdout + bad.stderr
