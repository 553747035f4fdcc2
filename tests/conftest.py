"""Shared fixtures. Tests that start real engines are marked `engines`; verl trainer runs are marked `trainer`."""

from __future__ import annotations

import os

import pytest

from seer_verl.paths import cpu_env

# The CPU environment of configs/cpu.yaml (VERL_PLATFORM=cpu, ...) must be in place before anything in this
# process imports verl: verl loads seer_verl's platform plugin, and caches its platform, at first import.
_CPU_ENV = cpu_env()
os.environ.update(_CPU_ENV)


@pytest.fixture(scope="session")
def cpu_environment() -> dict[str, str]:
    """The CPU environment applied to this test process (and handed to Ray workers)."""
    return dict(_CPU_ENV)


@pytest.fixture(scope="session")
def tiny_model() -> str:
    from seer_verl.prepare.model import build_tiny_model

    return str(build_tiny_model())


@pytest.fixture(scope="session")
def smollm2_model() -> str:
    from seer_verl.prepare.model import build_smollm2

    return str(build_smollm2())


@pytest.fixture(scope="session")
def arith_dataset() -> str:
    from seer_verl.prepare.arith_dataset import write_dataset
    from seer_verl.prepare.model import default_cache_dir

    train, _ = write_dataset(default_cache_dir() / "data" / "arith")
    return str(train)
